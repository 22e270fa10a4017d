//! One segment of a partition's log: a `.log` file of record batches stored as appended, named
//! by the base offset of its first batch, with its `.index` and `.timeindex` beside it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::durability::fsync_dir;
use crate::index::{IndexEntry, IndexFile, OffsetEntry, TimeEntry};
use crate::records::{
    crc_matches, parse_control_record, BatchHeader, ControlRecord, BATCH_HEADER_LEN, LOG_OVERHEAD,
};
use crate::txn_index::TxnIndex;

/// Writes every slice at `position`. Only the log's writer (under the partition lock) moves
/// the file cursor; readers use positional reads, so seeking here disturbs no one.
fn write_all_vectored_at(file: &File, slices: &mut [IoSlice<'_>], position: u64) -> io::Result<()> {
    let mut file = file;
    file.seek(SeekFrom::Start(position))?;
    let mut slices = slices;
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write a batch",
                ))
            }
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How [`LogSegment::open`] reads an existing segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The active segment after a crash: every batch is read and its CRC checked; the file is
    /// cut at the first torn or corrupt batch; the indexes are rebuilt in memory.
    Recover,
    /// The active segment after a clean shutdown (the marker was there): the files are what
    /// the last run fsynced, so only headers are read (to rebuild the indexes and producer
    /// state); a batch that is not whole and well framed still ends the segment.
    Clean,
    /// A segment that stopped being active: its index files are used if they pass every check
    /// (`open_with_index`); otherwise it is recovered as [`OpenMode::Recover`] and the rebuilt
    /// indexes are written.
    Older,
}

/// What a walk over batches checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Framing and CRC; rebuilds the indexes.
    Crc,
    /// Framing only; rebuilds the indexes.
    Headers,
    /// Framing only, after a checked index whose entries are kept.
    Trusted,
}

/// File name stem of the segment with this base offset: 20 zero-padded digits, as Kafka.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

pub struct LogSegment {
    base_offset: i64,
    log_path: PathBuf,
    /// Shared with readers, who pread outside the partition lock.
    file: Arc<File>,
    /// Bytes of complete batches in the file.
    size: u64,
    /// Offset after the last batch (the base offset while empty).
    next_offset: i64,
    offset_index: IndexFile<OffsetEntry>,
    time_index: IndexFile<TimeEntry>,
    /// Aborted transactions whose ABORT marker is in this segment (`.txnindex`).
    txn_index: TxnIndex,
    index_interval_bytes: u64,
    bytes_since_last_index_entry: u64,
    /// Largest batch max-timestamp in the segment, -1 while empty.
    max_timestamp: i64,
    /// Base offset of the batch that carried `max_timestamp`.
    offset_of_max_timestamp: i64,
    /// Wall-clock time of the first append, for `segment.ms`.
    first_append_ms: Option<i64>,
    /// Where the last early writeback ([`start_writeback`]) ended.
    written_back: u64,
}

/// Appended bytes after which the segment's writeback is started ([`start_writeback`]).
const WRITEBACK_CHUNK: u64 = 4 << 20;

/// Asks the kernel to start writing `[from, from + len)` of `file` to disk, without waiting.
/// Under `flush=os` nothing else writes a segment back until the page cache is under pressure,
/// so a roll's fsync (which makes the old segment durable before the new one is used) found up
/// to a whole segment dirty and held the partition's appends for as long as the disk took to
/// write it: half a second per GiB in the benchmark (docs/BENCHMARKS.md). Started a few MiB at
/// a time, the writeback keeps pace with the appends and the roll's fsync finds little left.
/// A hint only: durability still comes from fsync, and an error here is ignored.
fn start_writeback(file: &File, from: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else {
            return;
        };
        // SAFETY: the descriptor is open for the life of `file`; the call reads no memory of
        // ours and only schedules IO on that file's pages.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), from, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, from, len);
}

/// Where a read found its bytes: the caller preads them outside the partition lock.
#[derive(Clone)]
pub struct SegmentSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

/// The whole batches at the start of a slice that end below a bound ([`SegmentSlice::extent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Bytes of those batches, from the slice's start.
    pub len: usize,
    /// The offset after the last of them; `None` when there is none.
    pub next_offset: Option<i64>,
}

/// Bytes read at a time by [`SegmentSlice::extent`]: one read covers the headers of many small
/// batches, and a large batch costs one read of its header's window, not of its body.
const EXTENT_WINDOW: usize = 4096;

impl SegmentSlice {
    /// Reads the slice and drops a trailing partial batch, so readers only ever see whole
    /// batches; the first batch is always whole because `len` covers it.
    pub fn load(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.position)?;
        let whole = crate::records::BatchIter::new(&buf).fold(0, |_, (at, h)| at + h.total_len());
        buf.truncate(whole);
        Ok(buf)
    }

    /// The whole batches at the start of the slice whose last offset is below `stop_before`
    /// (`i64::MAX` for all of them), found by reading only their headers: a fetch sends the
    /// bytes themselves from the file (`sendfile`) without ever copying them into memory, but
    /// it must still end on a batch boundary (a trailing partial batch is dropped, as
    /// [`SegmentSlice::load`] does) and, for read_committed, before the last stable offset.
    pub fn extent(&self, stop_before: i64) -> io::Result<Extent> {
        let mut window = [0u8; EXTENT_WINDOW];
        // `window[..filled]` holds the slice's bytes from `window_at`.
        let (mut window_at, mut filled) = (0usize, 0usize);
        let mut extent = Extent {
            len: 0,
            next_offset: None,
        };
        loop {
            let at = extent.len;
            let rest = self.len - at;
            if rest < BATCH_HEADER_LEN {
                return Ok(extent);
            }
            if at < window_at || at + BATCH_HEADER_LEN > window_at + filled {
                filled = rest.min(EXTENT_WINDOW);
                self.file
                    .read_exact_at(&mut window[..filled], self.position + at as u64)?;
                window_at = at;
            }
            let Some(header) = BatchHeader::parse(&window[at - window_at..filled]) else {
                return Ok(extent);
            };
            let len = header.total_len();
            if !header.covers_header() || len > rest || header.last_offset() >= stop_before {
                return Ok(extent);
            }
            extent.len = at + len;
            extent.next_offset = Some(header.next_offset());
        }
    }

    /// The first `len` bytes of the slice (at most all of it).
    pub fn prefix(&self, len: usize) -> SegmentSlice {
        SegmentSlice {
            file: self.file.clone(),
            position: self.position,
            len: len.min(self.len),
        }
    }
}

/// `<stem>.txnindex` beside `<stem>.log` (and `<stem>.txnindex.cleaned` beside a cleaner's
/// `<stem>.log.cleaned`).
fn txn_index_path(log_path: &Path) -> PathBuf {
    match log_path.file_name().and_then(|n| n.to_str()) {
        Some(name) => log_path.with_file_name(name.replacen(".log", ".txnindex", 1)),
        None => log_path.with_extension("txnindex"),
    }
}

impl LogSegment {
    pub fn create(dir: &Path, base_offset: i64, index_interval_bytes: u64) -> io::Result<Self> {
        let stem = file_stem(base_offset);
        let seg = Self::create_at(
            [
                dir.join(format!("{stem}.log")),
                dir.join(format!("{stem}.index")),
                dir.join(format!("{stem}.timeindex")),
            ],
            base_offset,
            index_interval_bytes,
        )?;
        // The new file's name must survive a power loss: appends to it are fsynced (under
        // `flush=always` before they are acknowledged), but that covers its bytes, not its name.
        fsync_dir(dir)?;
        Ok(seg)
    }

    /// A new, empty segment whose log, offset index and time index live at these paths (the
    /// cleaner writes `.cleaned` files this way). The caller fsyncs the directory.
    pub(crate) fn create_at(
        paths: [PathBuf; 3],
        base_offset: i64,
        index_interval_bytes: u64,
    ) -> io::Result<Self> {
        let [log_path, index_path, time_path] = paths;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&log_path)?;
        // The transaction index follows the log's name (`<stem>.txnindex`, or
        // `<stem>.txnindex.cleaned` beside a cleaner's `.log.cleaned`); no file until the first
        // entry.
        let txn_index = TxnIndex::create(txn_index_path(&log_path))?;
        let seg = LogSegment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            offset_index: IndexFile::create(&index_path)?,
            time_index: IndexFile::create(&time_path)?,
            txn_index,
            index_interval_bytes,
            bytes_since_last_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_append_ms: None,
            written_back: 0,
        };
        Ok(seg)
    }

    /// Opens an existing segment, in one of three ways ([`OpenMode`]). Indexes are hints: an
    /// index never decides where a segment ends. Only a batch that fails its checks (framing,
    /// and the CRC where the mode reads bodies) makes the file shorter, so a segment is never
    /// cut below its valid batches because of a bad index.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        mode: OpenMode,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> io::Result<Self> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log"));
        let file = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let file_len = file.metadata()?.len();
        // At most one entry per batch, and a batch has at least a header.
        let max_entries = file_len / BATCH_HEADER_LEN as u64 + 1;
        let offset_index = IndexFile::open(
            &dir.join(format!("{stem}.index")),
            max_entries.saturating_mul(OffsetEntry::SIZE as u64),
        )?;
        let time_index = IndexFile::open(
            &dir.join(format!("{stem}.timeindex")),
            max_entries.saturating_mul(TimeEntry::SIZE as u64),
        )?;
        let mut seg = LogSegment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            offset_index,
            time_index,
            txn_index: TxnIndex::open(TxnIndex::path_for(dir, &stem))?,
            index_interval_bytes,
            bytes_since_last_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_append_ms: None,
            written_back: 0,
        };
        let end = match mode {
            OpenMode::Recover => {
                seg.reset();
                seg.walk(0, file_len, Walk::Crc, on_batch)?
            }
            OpenMode::Clean => {
                seg.reset();
                seg.walk(0, file_len, Walk::Headers, on_batch)?
            }
            OpenMode::Older => {
                if seg.open_with_index(file_len)? {
                    file_len
                } else {
                    tracing::warn!(
                        segment = %seg.log_path.display(),
                        "index missing or inconsistent with its segment: rebuilding it"
                    );
                    seg.reset();
                    let end = seg.walk(0, file_len, Walk::Crc, &mut |_| {})?;
                    seg.offset_index.persist()?;
                    seg.time_index.persist()?;
                    end
                }
            }
        };
        if end < file_len {
            tracing::warn!(
                segment = %seg.log_path.display(),
                valid_bytes = end,
                file_bytes = file_len,
                "truncating torn or corrupt tail of segment"
            );
            seg.file.set_len(end)?;
            seg.file.sync_all()?;
        }
        Ok(seg)
    }

    /// Forgets everything learned from the file and its indexes (before a walk from byte 0).
    fn reset(&mut self) {
        self.offset_index.truncate(0);
        self.time_index.truncate(0);
        self.size = 0;
        self.next_offset = self.base_offset;
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
    }

    /// An older segment with an index that passes every check: the entries are whole, in
    /// order and inside the file; the first entry is at byte 0; the batches at the first and
    /// last entries are batches with those offsets; the batches after the last entry (headers
    /// only) end exactly at the end of the file; and the last time-index entry names a batch
    /// carrying that timestamp. Anything else returns false and the caller rebuilds from the segment. A
    /// middle entry is not read here (that would read the whole file); readers check the
    /// batch an entry points to before using it ([`LogSegment::position_of`]).
    fn open_with_index(&mut self, file_len: u64) -> io::Result<bool> {
        if !self.index_structure_is_sane(file_len) {
            return Ok(false);
        }
        let (Some(first), Some(last)) = (
            self.offset_index.entries().first().copied(),
            self.offset_index.last().copied(),
        ) else {
            // A sane index of an empty file.
            return Ok(true);
        };
        for entry in [first, last] {
            let expected = self
                .base_offset
                .checked_add(i64::from(entry.relative_offset));
            match self.header_at(u64::from(entry.position), file_len)? {
                Some(h) if Some(h.base_offset) == expected => {}
                _ => return Ok(false),
            }
        }
        if let Some(t) = self.time_index.last().copied() {
            self.max_timestamp = t.timestamp;
            self.offset_of_max_timestamp = self
                .base_offset
                .saturating_add(i64::from(t.relative_offset));
        }
        let end = self.walk(
            u64::from(last.position),
            file_len,
            Walk::Trusted,
            &mut |_| {},
        )?;
        if end != file_len {
            return Ok(false);
        }
        if let Some(t) = self.time_index.last().copied() {
            let offset = self
                .base_offset
                .saturating_add(i64::from(t.relative_offset));
            let header = self.locate(offset)?.map(|(_, h)| h);
            if !header.is_some_and(|h| h.base_offset == offset && h.max_timestamp == t.timestamp) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The checks on the index files alone (no segment bytes read).
    fn index_structure_is_sane(&self, file_len: u64) -> bool {
        let offsets = self.offset_index.entries();
        let times = self.time_index.entries();
        if !self.offset_index.file_was_whole() || !self.time_index.file_was_whole() {
            return false;
        }
        if file_len == 0 {
            return offsets.is_empty() && times.is_empty();
        }
        // A non-empty segment has an entry for its first batch, and a time entry with it.
        let first_ok = offsets.first().is_some_and(|e| e.position == 0);
        let sorted = offsets
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
        let in_file = offsets
            .last()
            .is_some_and(|e| u64::from(e.position) + (BATCH_HEADER_LEN as u64) <= file_len);
        let last_offset = offsets.last().map_or(0, |e| e.relative_offset);
        let times_ok = !times.is_empty()
            && times.windows(2).all(|w| {
                w[0].timestamp < w[1].timestamp && w[0].relative_offset <= w[1].relative_offset
            })
            && times.iter().all(|t| t.relative_offset <= last_offset);
        first_ok && sorted && in_file && times_ok
    }

    /// The header of a batch at `position` that could be whole inside `file_len` bytes.
    fn header_at(&self, position: u64, file_len: u64) -> io::Result<Option<BatchHeader>> {
        let mut header_buf = [0u8; BATCH_HEADER_LEN];
        let Some(header_end) = position.checked_add(BATCH_HEADER_LEN as u64) else {
            return Ok(None);
        };
        if header_end > file_len {
            return Ok(None);
        }
        self.file.read_exact_at(&mut header_buf, position)?;
        Ok(BatchHeader::parse(&header_buf).filter(|h| {
            h.magic == 2
                && h.batch_length >= (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32
                && h.last_offset_delta >= 0
                && h.checked_next_offset().is_some()
                && position
                    .checked_add(h.total_len() as u64)
                    .is_some_and(|end| end <= file_len)
        }))
    }

    /// Walks batches from `start`, extending size/next_offset and (unless [`Walk::Trusted`])
    /// rebuilding the indexes. Stops at the first batch that is not whole and well framed (or,
    /// with [`Walk::Crc`], fails its CRC). Returns the end of the last good batch.
    fn walk(
        &mut self,
        start: u64,
        file_len: u64,
        how: Walk,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> io::Result<u64> {
        let mut position = start;
        let mut batch_buf = Vec::new();
        while let Some(header) = self.header_at(position, file_len)? {
            if header.base_offset < self.next_offset {
                break;
            }
            let len = header.total_len() as u64;
            if how == Walk::Crc {
                // Full CRC check of everything we could not trust. `len` fits in memory: it
                // is at most 2 GiB + 12 (an i32 length) and inside the file.
                batch_buf.resize(header.total_len(), 0);
                self.file.read_exact_at(&mut batch_buf, position)?;
                if !crc_matches(&batch_buf) {
                    break;
                }
            }
            if how == Walk::Trusted {
                self.note_batch(&header, len);
            } else {
                self.track_batch(&header, position, len);
            }
            on_batch(&header);
            position += len;
            self.size = position;
        }
        self.size = position;
        Ok(position)
    }

    fn note_batch(&mut self, header: &BatchHeader, len: u64) {
        // Callers only pass headers whose next offset exists (`header_at`, validated appends).
        self.next_offset = header.checked_next_offset().unwrap_or(i64::MAX);
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        self.bytes_since_last_index_entry = self.bytes_since_last_index_entry.saturating_add(len);
    }

    /// Records a batch just placed at `position` in the indexes and the segment's counters.
    /// A batch whose offset (relative to the segment's base) or position does not fit an index
    /// entry is not indexed; the log rolls before that can happen on append, so only a file
    /// written otherwise has one, and readers then walk to it from the entry before.
    fn track_batch(&mut self, header: &BatchHeader, position: u64, len: u64) {
        let first = self.offset_index.entries().is_empty();
        let relative = header
            .base_offset
            .checked_sub(self.base_offset)
            .and_then(|r| u32::try_from(r).ok());
        let position32 = u32::try_from(position).ok();
        if let (Some(relative_offset), Some(position32)) = (relative, position32) {
            if first || self.bytes_since_last_index_entry >= self.index_interval_bytes {
                self.offset_index.append(OffsetEntry {
                    relative_offset,
                    position: position32,
                });
                let ts = header.max_timestamp.max(self.max_timestamp);
                if self.time_index.last().is_none_or(|t| ts > t.timestamp) {
                    let ts_offset = if header.max_timestamp >= self.max_timestamp {
                        header.base_offset
                    } else {
                        self.offset_of_max_timestamp
                    };
                    // `ts_offset` is a batch base in [segment base, header.base_offset].
                    let ts_relative = ts_offset
                        .checked_sub(self.base_offset)
                        .and_then(|r| u32::try_from(r).ok())
                        .unwrap_or(relative_offset);
                    self.time_index.append(TimeEntry {
                        timestamp: ts,
                        relative_offset: ts_relative,
                    });
                }
                self.bytes_since_last_index_entry = 0;
            }
        }
        self.note_batch(header, len);
    }

    /// Appends validated batches given as (stamped header, rest of batch) pairs, in one
    /// vectored write at the end of the file, and indexes them.
    pub fn append(
        &mut self,
        headers: &[[u8; BATCH_HEADER_LEN]],
        bodies: &[&[u8]],
        now_ms: i64,
    ) -> io::Result<()> {
        let position = self.size;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(headers.len() * 2);
        for (h, b) in headers.iter().zip(bodies) {
            slices.push(IoSlice::new(h));
            slices.push(IoSlice::new(b));
        }
        let len: u64 = slices.iter().map(|s| s.len() as u64).sum();
        if let Err(e) = write_all_vectored_at(&self.file, &mut slices, position) {
            // Leave no partial batch behind: the next append starts at the old size.
            let _ = self.file.set_len(position);
            return Err(e);
        }
        let mut at = position;
        for h in headers {
            if let Some(header) = BatchHeader::parse(h) {
                let batch_len = header.total_len() as u64;
                self.track_batch(&header, at, batch_len);
                at += batch_len;
            }
        }
        self.size = position + len;
        self.first_append_ms.get_or_insert(now_ms);
        self.write_back_early();
        Ok(())
    }

    /// Starts the writeback of what was appended since the last call, once it is a
    /// [`WRITEBACK_CHUNK`] or more.
    fn write_back_early(&mut self) {
        let from = self.written_back.min(self.size);
        let pending = self.size - from;
        if pending >= WRITEBACK_CHUNK {
            start_writeback(&self.file, from, pending);
            self.written_back = self.size;
        } else if self.written_back > self.size {
            // The segment was truncated.
            self.written_back = self.size;
        }
    }

    /// The header of the segment's first batch, if any.
    pub(crate) fn first_header(&self) -> io::Result<Option<BatchHeader>> {
        self.header_at(0, self.size)
    }

    /// The header of the segment's last batch, if any (found by the index, then a short walk).
    pub(crate) fn last_header(&self) -> io::Result<Option<BatchHeader>> {
        if self.is_empty() {
            return Ok(None);
        }
        Ok(self
            .locate(self.next_offset.saturating_sub(1))?
            .map(|(_, h)| h))
    }

    /// Every batch header of the segment, in order (no bodies read).
    pub(crate) fn for_each_header(&self, on_batch: &mut dyn FnMut(&BatchHeader)) -> io::Result<()> {
        let mut position = 0u64;
        while let Some(header) = self.header_at(position, self.size)? {
            on_batch(&header);
            position += header.total_len() as u64;
        }
        Ok(())
    }

    /// Kafka's `LogSegment.truncateTo`: removes the batch holding `offset` (or the first batch
    /// after it) and everything after it, from the file (cut and fsynced), the in-memory offset
    /// and time indexes and the transaction index. Returns the bytes removed. The segment's
    /// next offset is then the end of its last remaining batch (its base offset if none is left).
    pub(crate) fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        let Some((cut, first_removed)) = self.locate(offset)? else {
            return Ok(());
        };
        let cut_offset = first_removed.base_offset;
        // The index entries of the kept batches stay; the walk below re-derives the counters
        // from the last kept offset entry, as `open_with_index` does.
        let keep = self
            .offset_index
            .entries()
            .partition_point(|e| u64::from(e.position) < cut);
        self.offset_index.truncate(keep);
        let base = self.base_offset;
        // A time entry may name a batch after the last kept offset entry (it was written with
        // a later offset entry); such entries go too, so the index stays one `open` trusts.
        let last_kept = self.offset_index.last().map(|e| e.relative_offset);
        let keep_times = self.time_index.entries().partition_point(|t| {
            base.saturating_add(i64::from(t.relative_offset)) < cut_offset
                && last_kept.is_some_and(|l| t.relative_offset <= l)
        });
        self.time_index.truncate(keep_times);
        let end = match self.offset_index.last().copied() {
            None => {
                self.reset();
                0
            }
            Some(last) => {
                self.next_offset = self.base_offset;
                self.bytes_since_last_index_entry = 0;
                self.max_timestamp = -1;
                self.offset_of_max_timestamp = self.base_offset;
                if let Some(t) = self.time_index.last().copied() {
                    self.max_timestamp = t.timestamp;
                    self.offset_of_max_timestamp =
                        base.saturating_add(i64::from(t.relative_offset));
                }
                self.walk(u64::from(last.position), cut, Walk::Trusted, &mut |_| {})?
            }
        };
        self.file.set_len(end)?;
        self.file.sync_all()?;
        self.size = end;
        if self.is_empty() {
            self.first_append_ms = None;
        }
        self.txn_index.truncate_from(cut_offset)?;
        self.txn_index.sync()?;
        Ok(())
    }

    /// The byte position of the batch containing `offset` (or the first one after it), found by
    /// the offset index then a header walk. `None` when no batch here holds or follows it.
    pub fn position_of(&self, offset: i64) -> io::Result<Option<u64>> {
        Ok(self.locate(offset)?.map(|(position, _)| position))
    }

    /// [`LogSegment::position_of`] with the header found there, so callers need not read it
    /// again (each header is one read on the fetch path).
    pub fn locate(&self, offset: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let relative = offset
            .saturating_sub(self.base_offset)
            .clamp(0, i64::from(u32::MAX)) as u32;
        // An index entry is a hint: it is used only if a batch with its offset starts there.
        // The walk checks it with the header it reads anyway.
        let mut hint = self.offset_index.floor(relative).map(|e| {
            let expected = self
                .base_offset
                .saturating_add(i64::from(e.relative_offset));
            (e, expected)
        });
        let mut position = hint.map_or(0, |(e, _)| u64::from(e.position));
        loop {
            let header = self.header_at(position, self.size)?;
            if let Some((e, expected)) = hint.take() {
                if header.as_ref().is_none_or(|h| h.base_offset != expected) {
                    tracing::warn!(
                        segment = %self.log_path.display(),
                        relative_offset = e.relative_offset,
                        position = e.position,
                        "index entry does not point at its batch: scanning the segment"
                    );
                    position = 0;
                    continue;
                }
            }
            let Some(header) = header else {
                return Ok(None);
            };
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.total_len() as u64;
        }
    }

    /// The first batch whose max timestamp is at or after `timestamp`, as a slice of one batch.
    pub fn find_by_timestamp(&self, timestamp: i64) -> io::Result<Option<SegmentSlice>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let start_offset = self
            .time_index
            .floor_before(timestamp)
            .map_or(self.base_offset, |t| {
                self.base_offset + i64::from(t.relative_offset)
            });
        let Some(mut position) = self.position_of(start_offset)? else {
            return Ok(None);
        };
        while let Some(header) = self.header_at(position, self.size)? {
            if header.max_timestamp >= timestamp {
                return Ok(Some(self.slice(position, header.total_len())));
            }
            position += header.total_len() as u64;
        }
        Ok(None)
    }

    pub fn slice(&self, position: u64, len: usize) -> SegmentSlice {
        SegmentSlice {
            file: self.file.clone(),
            position,
            len,
        }
    }

    /// A reopened, non-empty segment counts its age (for `segment.ms`) from `now_ms`.
    pub fn mark_opened(&mut self, now_ms: i64) {
        if !self.is_empty() {
            self.first_append_ms.get_or_insert(now_ms);
        }
    }

    /// Makes the segment durable as it stands: fsyncs the log and writes its indexes (called
    /// when it stops being active).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()?;
        self.offset_index.persist()?;
        self.time_index.persist()?;
        self.txn_index.sync()
    }

    pub fn txn_index(&self) -> &TxnIndex {
        &self.txn_index
    }

    pub fn txn_index_mut(&mut self) -> &mut TxnIndex {
        &mut self.txn_index
    }

    /// Walks the batch headers from the batch holding `from` (or the first after it) to the end
    /// of the segment, with the control record of each control batch (the only bodies read:
    /// a marker is a few dozen bytes). Used to replay producer state after a snapshot.
    pub fn scan(
        &self,
        from: i64,
        on_batch: &mut dyn FnMut(&BatchHeader, Option<ControlRecord>),
    ) -> io::Result<()> {
        let Some((mut position, _)) = self.locate(from)? else {
            return Ok(());
        };
        let mut buf = Vec::new();
        while let Some(header) = self.header_at(position, self.size)? {
            let control = if header.is_control() {
                // Bounded by `header_at` to lie inside the file; markers are tiny, and a
                // control batch Sluice did not write is read only up to 64 KiB.
                buf.resize(header.total_len().min(64 * 1024), 0);
                self.file.read_exact_at(&mut buf, position)?;
                parse_control_record(&buf)
            } else {
                None
            };
            on_batch(&header, control);
            position += header.total_len() as u64;
        }
        Ok(())
    }

    /// Removes the segment's files (the caller fsyncs the directory once for all it removes).
    pub fn delete_files(&self) -> io::Result<()> {
        for path in [
            self.log_path.as_path(),
            self.offset_index.path(),
            self.time_index.path(),
            self.txn_index.path(),
        ] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }
    /// The max timestamp of the segment's first batch (the cleaner's `max.compaction.lag.ms`
    /// clock, as Kafka's first-batch timestamp), if it has one.
    pub fn first_batch_timestamp(&self) -> Option<i64> {
        self.header_at(0, self.size)
            .ok()
            .flatten()
            .map(|h| h.max_timestamp)
    }
    pub fn first_append_ms(&self) -> Option<i64> {
        self.first_append_ms
    }
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }
}
