//! One segment of a partition's log: a `.log` file of record batches stored as appended, named
//! by the base offset of its first batch, with its `.index` and `.timeindex` beside it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::index::{IndexFile, OffsetEntry, TimeEntry};
use crate::records::{crc_matches, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD};

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
    index_interval_bytes: u64,
    bytes_since_last_index_entry: u64,
    /// Largest batch max-timestamp in the segment, -1 while empty.
    max_timestamp: i64,
    /// Base offset of the batch that carried `max_timestamp`.
    offset_of_max_timestamp: i64,
    /// Wall-clock time of the first append, for `segment.ms`.
    first_append_ms: Option<i64>,
}

/// Where a read found its bytes: the caller preads them outside the partition lock.
#[derive(Clone)]
pub struct SegmentSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

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
}

impl LogSegment {
    pub fn create(dir: &Path, base_offset: i64, index_interval_bytes: u64) -> io::Result<Self> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log"));
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&log_path)?;
        Ok(LogSegment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            offset_index: IndexFile::create(&dir.join(format!("{stem}.index")))?,
            time_index: IndexFile::create(&dir.join(format!("{stem}.timeindex")))?,
            index_interval_bytes,
            bytes_since_last_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_append_ms: None,
        })
    }

    /// Opens an existing segment. With `recover` every batch is read and its CRC checked, and
    /// the file is truncated at the first torn or corrupt batch; the indexes are rebuilt.
    /// Without it the indexes are trusted and only the batches after the last index entry are
    /// walked (headers only) to find the end.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        recover: bool,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> io::Result<Self> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log"));
        let file = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let file_len = file.metadata()?.len();
        let mut seg = LogSegment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            offset_index: IndexFile::open(&dir.join(format!("{stem}.index")))?,
            time_index: IndexFile::open(&dir.join(format!("{stem}.timeindex")))?,
            index_interval_bytes,
            bytes_since_last_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_append_ms: None,
        };
        let trusted = !recover && seg.indexes_look_sane(file_len);
        let start = if trusted {
            // Resume the walk at the last indexed batch.
            let last = seg.offset_index.last().copied();
            if let Some(t) = seg.time_index.last() {
                seg.max_timestamp = t.timestamp;
                seg.offset_of_max_timestamp = base_offset + i64::from(t.relative_offset);
            }
            last.map(|e| u64::from(e.position)).unwrap_or(0)
        } else {
            seg.offset_index.truncate(0);
            seg.time_index.truncate(0);
            0
        };
        let end = seg.walk(start, file_len, !trusted, on_batch)?;
        if !trusted && !recover {
            // An older segment whose index was missing or wrong: keep the rebuilt one.
            seg.offset_index.persist()?;
            seg.time_index.persist()?;
        }
        if end < file_len {
            tracing::warn!(
                segment = %seg.log_path.display(),
                valid_bytes = end,
                file_bytes = file_len,
                "truncating torn or corrupt tail of segment"
            );
            seg.file.set_len(end)?;
        }
        Ok(seg)
    }

    fn indexes_look_sane(&self, file_len: u64) -> bool {
        let offsets = self.offset_index.entries();
        let sorted = offsets
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
        let in_file = offsets
            .last()
            .is_none_or(|e| u64::from(e.position) < file_len);
        // A non-empty segment always has an entry for its first batch.
        let present = file_len == 0 || !offsets.is_empty();
        sorted && in_file && present
    }

    /// Walks batches from `start`, extending size/next_offset and (when `index`) the indexes.
    /// Returns the end of the last valid batch.
    fn walk(
        &mut self,
        start: u64,
        file_len: u64,
        index: bool,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> io::Result<u64> {
        let mut position = start;
        let mut header_buf = [0u8; BATCH_HEADER_LEN];
        let mut batch_buf = Vec::new();
        while position + BATCH_HEADER_LEN as u64 <= file_len {
            self.file.read_exact_at(&mut header_buf, position)?;
            let Some(header) = BatchHeader::parse(&header_buf) else {
                break;
            };
            let len = header.total_len() as u64;
            let sane = header.magic == 2
                && header.batch_length >= (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32
                && header.last_offset_delta >= 0
                && header.base_offset >= self.next_offset
                && position + len <= file_len;
            if !sane {
                break;
            }
            if index {
                // Full CRC check of everything we could not trust.
                batch_buf.resize(len as usize, 0);
                self.file.read_exact_at(&mut batch_buf, position)?;
                if !crc_matches(&batch_buf) {
                    break;
                }
                self.track_batch(&header, position, len)?;
            } else {
                self.note_batch(&header, len);
            }
            on_batch(&header);
            position += len;
        }
        self.size = position;
        Ok(position)
    }

    fn note_batch(&mut self, header: &BatchHeader, len: u64) {
        self.next_offset = header.next_offset();
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        self.bytes_since_last_index_entry += len;
    }

    /// Records a batch just placed at `position` in the indexes and the segment's counters.
    fn track_batch(&mut self, header: &BatchHeader, position: u64, len: u64) -> io::Result<()> {
        let first = self.offset_index.entries().is_empty();
        if first || self.bytes_since_last_index_entry >= self.index_interval_bytes {
            let relative_offset = (header.base_offset - self.base_offset) as u32;
            self.offset_index.append(OffsetEntry {
                relative_offset,
                position: position as u32,
            });
            let ts = header.max_timestamp.max(self.max_timestamp);
            if self.time_index.last().is_none_or(|t| ts > t.timestamp) {
                let ts_offset = if header.max_timestamp >= self.max_timestamp {
                    header.base_offset
                } else {
                    self.offset_of_max_timestamp
                };
                self.time_index.append(TimeEntry {
                    timestamp: ts,
                    relative_offset: (ts_offset - self.base_offset) as u32,
                });
            }
            self.bytes_since_last_index_entry = 0;
        }
        self.note_batch(header, len);
        Ok(())
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
                self.track_batch(&header, at, batch_len)?;
                at += batch_len;
            }
        }
        self.size = position + len;
        self.first_append_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// The byte position of the batch containing `offset` (or the first one after it), found by
    /// the offset index then a header walk. `None` when no batch here holds or follows it.
    pub fn position_of(&self, offset: i64) -> io::Result<Option<u64>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let relative = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let mut position = self
            .offset_index
            .floor(relative)
            .map_or(0, |e| u64::from(e.position));
        let mut header_buf = [0u8; BATCH_HEADER_LEN];
        while position + BATCH_HEADER_LEN as u64 <= self.size {
            self.file.read_exact_at(&mut header_buf, position)?;
            let Some(header) = BatchHeader::parse(&header_buf) else {
                return Ok(None);
            };
            if header.last_offset() >= offset {
                return Ok(Some(position));
            }
            position += header.total_len() as u64;
        }
        Ok(None)
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
        let mut header_buf = [0u8; BATCH_HEADER_LEN];
        while position + BATCH_HEADER_LEN as u64 <= self.size {
            self.file.read_exact_at(&mut header_buf, position)?;
            let Some(header) = BatchHeader::parse(&header_buf) else {
                return Ok(None);
            };
            if header.max_timestamp >= timestamp {
                return Ok(Some(self.slice(position, header.total_len())));
            }
            position += header.total_len() as u64;
        }
        Ok(None)
    }

    /// A slice of the single batch starting at `position`.
    pub fn batch_at(&self, position: u64) -> io::Result<Option<SegmentSlice>> {
        let mut header_buf = [0u8; BATCH_HEADER_LEN];
        if position + BATCH_HEADER_LEN as u64 > self.size {
            return Ok(None);
        }
        self.file.read_exact_at(&mut header_buf, position)?;
        Ok(BatchHeader::parse(&header_buf).map(|h| self.slice(position, h.total_len())))
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
        self.time_index.persist()
    }

    /// Removes the segment's files.
    pub fn delete_files(&self) -> io::Result<()> {
        for path in [
            self.log_path.as_path(),
            self.offset_index.path(),
            self.time_index.path(),
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
    pub fn first_append_ms(&self) -> Option<i64> {
        self.first_append_ms
    }
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }
}
