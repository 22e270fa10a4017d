//! Record batches (magic 2) at the byte level: header fields, validation of what a producer
//! sent, and the patching the log does on append (base offset, leader epoch, LogAppendTime).
//!
//! Nothing here decodes records: the produce path checks the header and the CRC and keeps the
//! client's bytes, so compressed batches are stored exactly as sent.

use crate::error::StorageError;

/// Bytes before the first record of a batch.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes that frame a batch before its `batchLength` count starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}
fn be_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}
fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

/// The fixed header of one stored or produced batch. Parsed from at least
/// [`BATCH_HEADER_LEN`] bytes; the constructor checks the length so the accessors cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the `batchLength` field; the whole batch is `batch_length + 12` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Reads the header at the start of `buf`; `None` if fewer than 61 bytes are there.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < BATCH_HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET),
            batch_length: be_i32(buf, BATCH_LENGTH),
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH),
            magic: buf[MAGIC] as i8,
            crc: u32::from_be_bytes([buf[CRC], buf[CRC + 1], buf[CRC + 2], buf[CRC + 3]]),
            attributes: be_i16(buf, ATTRIBUTES),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP),
            producer_id: be_i64(buf, PRODUCER_ID),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH),
            base_sequence: be_i32(buf, BASE_SEQUENCE),
            records_count: be_i32(buf, RECORDS_COUNT),
        })
    }

    /// Whether the batch's length covers at least its own header: a shorter one is garbage (a
    /// torn or corrupt frame), whatever follows it.
    pub fn covers_header(&self) -> bool {
        self.batch_length >= (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32
    }
    /// Total bytes of the batch including the 12-byte frame.
    pub fn total_len(&self) -> usize {
        self.batch_length.max(0) as usize + LOG_OVERHEAD
    }
    /// Saturating: a header read from disk may carry any base offset; the log refuses a batch
    /// whose offsets overflow (see [`BatchHeader::checked_next_offset`]) before using them.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    /// The offset after the batch, if it is representable.
    pub fn checked_next_offset(&self) -> Option<i64> {
        self.base_offset
            .checked_add(i64::from(self.last_offset_delta))?
            .checked_add(1)
    }
    /// 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// Last sequence number of the batch, wrapping at i32::MAX as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
}

/// What the log learned about one batch of a produce request while validating it.
#[derive(Debug, Clone, Copy)]
pub struct ProducedBatch {
    /// Where the batch starts in the produced buffer.
    pub position: usize,
    pub header: BatchHeader,
}

/// Walks the batches of a buffer, stopping (without error) at a trailing partial batch.
/// Used on stored data: fetch trimming, recovery scans and index rebuilds.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, position: 0 }
    }
    /// Bytes consumed by the complete batches returned so far.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = (usize, BatchHeader);
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.position..)?;
        let header = BatchHeader::parse(rest)?;
        let len = header.total_len();
        if !header.covers_header() || len > rest.len() {
            return None;
        }
        let at = self.position;
        self.position += len;
        Some((at, header))
    }
}

/// The smallest record a v2 batch can hold: length, attributes, timestamp delta, offset delta,
/// key length (-1), value length (-1) and header count, one byte each.
pub const MIN_RECORD_BYTES: usize = 7;

/// The most records a produced batch can hold, without decoding it (records are never
/// decoded on the produce path; Kafka decodes them and refuses a batch whose records run
/// out before its count with INVALID_RECORD).
/// - Uncompressed: its records section (the bytes after the 61-byte header) holds at most
///   one record per [`MIN_RECORD_BYTES`]. Exact: no valid batch is refused.
/// - Compressed: a few bytes can inflate to many records, so the compressed size bounds
///   nothing. The broker bounds decompression by `max.message.bytes` (a batch that inflates
///   past it is refused wherever the broker decompresses), so a batch whose records could not
///   fit in `max.message.bytes` once decompressed is refused here too. With Kafka's default
///   (1,048,588) that is 149,798 records, far above what producers put in one batch
///   (librdkafka and the Java client cap a batch's uncompressed size near `batch.size`).
///
/// Either way a batch moves the log end by at most `max.message.bytes / 7` offsets (the
/// 2^31-offset jump of a lying header is refused).
pub fn max_records_in(header: &BatchHeader, max_message_bytes: usize) -> i64 {
    let records_bytes = header.total_len().saturating_sub(BATCH_HEADER_LEN);
    let bound = if header.compression() == 0 {
        records_bytes
    } else {
        max_message_bytes.max(records_bytes)
    };
    i64::try_from(bound / MIN_RECORD_BYTES).unwrap_or(i64::MAX)
}

/// CRC-32C over attributes..end, as stored in the batch's `crc` field.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES..).unwrap_or(&[]))
}

/// Checks a producer's record set: every batch is magic 2, well framed, has a matching CRC,
/// a consistent record count, a known codec, and fits `max_message_bytes`. Records are not
/// decoded. Returns the batches in order; the caller must reject an empty result.
pub fn validate_produced(
    buf: &[u8],
    max_message_bytes: usize,
) -> Result<Vec<ProducedBatch>, StorageError> {
    let mut batches = Vec::with_capacity(1);
    let mut position = 0usize;
    while position < buf.len() {
        let rest = &buf[position..];
        if rest.len() < LOG_OVERHEAD + 5 {
            return Err(StorageError::CorruptMessage(format!(
                "record set has {} trailing bytes, too few for a batch header",
                rest.len()
            )));
        }
        let magic = rest[MAGIC] as i8;
        if magic != 2 {
            return Err(StorageError::UnsupportedMessageFormat(format!(
                "record batch magic {magic} is not supported; only magic 2 (Kafka 0.11+) is"
            )));
        }
        let header = BatchHeader::parse(rest).ok_or_else(|| {
            StorageError::CorruptMessage("record batch shorter than its 61-byte header".into())
        })?;
        if !header.covers_header() {
            return Err(StorageError::CorruptMessage(format!(
                "record batch length {} is shorter than a batch header",
                header.batch_length
            )));
        }
        let len = header.total_len();
        if len > rest.len() {
            return Err(StorageError::CorruptMessage(format!(
                "record batch claims {len} bytes but only {} were sent",
                rest.len()
            )));
        }
        if len > max_message_bytes {
            return Err(StorageError::MessageTooLarge(format!(
                "record batch of {len} bytes exceeds max.message.bytes {max_message_bytes}"
            )));
        }
        let batch = &rest[..len];
        let crc = compute_crc(batch);
        if crc != header.crc {
            return Err(StorageError::CorruptMessage(format!(
                "record batch CRC mismatch: stored {:#010x}, computed {crc:#010x}",
                header.crc
            )));
        }
        if header.compression() > 4 {
            return Err(StorageError::UnsupportedCompression(format!(
                "compression codec id {} is unknown",
                header.compression()
            )));
        }
        // Kafka (LogValidator.validateBatch): INVALID_RECORD for a count that is not positive
        // or disagrees with the offset range.
        if header.records_count <= 0
            || header.last_offset_delta < 0
            || i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1
        {
            return Err(StorageError::InvalidRecord(format!(
                "invalid batch record count {} for last offset delta {}",
                header.records_count, header.last_offset_delta
            )));
        }
        // The count decides how far the log end moves, so it must be one the batch can hold.
        let max_records = max_records_in(&header, max_message_bytes);
        if i64::from(header.records_count) > max_records {
            return Err(StorageError::InvalidRecord(format!(
                "record batch claims {} records but a {} batch of {len} bytes can hold at most {max_records} (each record takes at least {MIN_RECORD_BYTES} bytes{})",
                header.records_count,
                if header.compression() == 0 { "uncompressed" } else { "compressed" },
                if header.compression() == 0 { "" } else { " once decompressed, and decompression is bounded by max.message.bytes" },
            )));
        }
        batches.push(ProducedBatch { position, header });
        position += len;
    }
    Ok(batches)
}

/// How the log stamps a batch on append.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub base_offset: i64,
    pub leader_epoch: i32,
    /// `Some(now)` when the topic uses `message.timestamp.type=LogAppendTime`.
    pub log_append_time_ms: Option<i64>,
}

/// Patches a copy of one batch's 61-byte header; the rest of the batch stays where the client's
/// request put it and is written from there. The leader epoch sits outside the CRC;
/// LogAppendTime changes covered fields, so only then is the CRC recomputed, over the patched
/// header and `rest` (the batch after its header).
pub fn stamp_header(header: &mut [u8; BATCH_HEADER_LEN], rest: &[u8], stamp: Stamp) {
    header[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&stamp.base_offset.to_be_bytes());
    header[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&stamp.leader_epoch.to_be_bytes());
    if let Some(now) = stamp.log_append_time_ms {
        let attributes = be_i16(header, ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
        header[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        header[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[ATTRIBUTES..]), rest);
        header[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// A transaction marker's control record (Kafka's `EndTransactionMarker`): the key is
/// `version i16 = 0, type i16` (0 ABORT, 1 COMMIT), the value `version i16 = 0,
/// coordinator_epoch i32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord {
    /// 0 ABORT, 1 COMMIT; other types (Kafka has a few for KRaft) are passed through.
    pub kind: i16,
    /// The coordinator epoch of a transaction marker, -1 when the value is absent or short.
    pub coordinator_epoch: i32,
}

impl ControlRecord {
    pub const ABORT: i16 = 0;
    pub const COMMIT: i16 = 1;
    pub fn is_abort(&self) -> bool {
        self.kind == Self::ABORT
    }
    pub fn is_commit(&self) -> bool {
        self.kind == Self::COMMIT
    }
}

fn read_varint(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// The control record of a whole control batch (`batch` starts at its base offset). Control
/// batches are never compressed (Kafka writes them uncompressed); `None` for anything that is
/// not an uncompressed control batch whose first record has a 4-byte key.
pub fn parse_control_record(batch: &[u8]) -> Option<ControlRecord> {
    let header = BatchHeader::parse(batch)?;
    if !header.is_control() || header.compression() != 0 {
        return None;
    }
    let body = batch.get(BATCH_HEADER_LEN..header.total_len().min(batch.len()))?;
    let mut at = 0usize;
    let _len = read_varint(body, &mut at)?;
    at += 1; // attributes
    read_varint(body, &mut at)?; // timestamp delta
    read_varint(body, &mut at)?; // offset delta
    let key_len = usize::try_from(read_varint(body, &mut at)?).ok()?;
    let key = body.get(at..at.checked_add(key_len)?)?;
    at += key_len;
    if key.len() < 4 {
        return None;
    }
    let kind = be_i16(key, 2);
    let mut coordinator_epoch = -1;
    if let Some(value_len) = read_varint(body, &mut at).and_then(|l| usize::try_from(l).ok()) {
        if let Some(value) = body.get(at..at.saturating_add(value_len)) {
            if value.len() >= 6 {
                coordinator_epoch = be_i32(value, 2);
            }
        }
    }
    Some(ControlRecord {
        kind,
        coordinator_epoch,
    })
}

/// Builds a transaction marker batch (Kafka's `MemoryRecords.withEndTransactionMarker`): magic
/// 2, uncompressed, attributes transactional|control, the producer's id and epoch, base
/// sequence -1, one control record. The base offset is 0 (the log stamps it).
pub fn build_control_batch(
    producer_id: i64,
    producer_epoch: i16,
    record: ControlRecord,
    timestamp: i64,
) -> Vec<u8> {
    let mut rec = Vec::with_capacity(24);
    rec.push(0u8); // attributes
    write_varint(&mut rec, 0); // timestamp delta
    write_varint(&mut rec, 0); // offset delta
    write_varint(&mut rec, 4);
    rec.extend(0i16.to_be_bytes());
    rec.extend(record.kind.to_be_bytes());
    write_varint(&mut rec, 6);
    rec.extend(0i16.to_be_bytes());
    rec.extend(record.coordinator_epoch.to_be_bytes());
    write_varint(&mut rec, 0); // headers
    let mut records = Vec::with_capacity(rec.len() + 2);
    write_varint(&mut records, rec.len() as i64);
    records.extend(rec);
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    b.extend(0i64.to_be_bytes());
    b.extend(((BATCH_HEADER_LEN - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.push(2);
    b.extend(0u32.to_be_bytes());
    b.extend((ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    b.extend(0i32.to_be_bytes()); // last offset delta
    b.extend(timestamp.to_be_bytes());
    b.extend(timestamp.to_be_bytes());
    b.extend(producer_id.to_be_bytes());
    b.extend(producer_epoch.to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend(1i32.to_be_bytes());
    b.extend(records);
    let crc = compute_crc(&b);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Checks a stored batch's CRC (recovery).
pub fn crc_matches(batch: &[u8]) -> bool {
    match BatchHeader::parse(batch) {
        Some(h) => compute_crc(batch) == h.crc,
        None => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a valid uncompressed batch of `count` records with the given payload size.
    /// Records are framed with real varints so clients could read them.
    pub fn make_batch(count: i32, value_len: usize, timestamp: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            let mut rec = Vec::new();
            rec.push(0u8); // attributes
            put_varint(&mut rec, 0); // timestamp delta
            put_varint(&mut rec, i64::from(i)); // offset delta
            put_varint(&mut rec, -1); // null key
            put_varint(&mut rec, value_len as i64);
            rec.extend(std::iter::repeat_n(b'v', value_len));
            put_varint(&mut rec, 0); // headers
            put_varint(&mut records, rec.len() as i64);
            records.extend(rec);
        }
        let mut b = Vec::new();
        b.extend(0i64.to_be_bytes());
        b.extend(((BATCH_HEADER_LEN - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.push(2);
        b.extend(0u32.to_be_bytes());
        b.extend(0i16.to_be_bytes());
        b.extend((count - 1).to_be_bytes());
        b.extend(timestamp.to_be_bytes());
        b.extend(timestamp.to_be_bytes());
        b.extend((-1i64).to_be_bytes());
        b.extend((-1i16).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.extend(count.to_be_bytes());
        b.extend(records);
        let crc = compute_crc(&b);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    /// Stamps a copy of the header and reassembles the batch, as the log writes it.
    fn stamped(b: &[u8], stamp: Stamp) -> Vec<u8> {
        let mut header = [0u8; BATCH_HEADER_LEN];
        header.copy_from_slice(&b[..BATCH_HEADER_LEN]);
        stamp_header(&mut header, &b[BATCH_HEADER_LEN..], stamp);
        let mut out = header.to_vec();
        out.extend_from_slice(&b[BATCH_HEADER_LEN..]);
        out
    }

    #[test]
    fn validates_and_stamps() {
        let b = make_batch(3, 10, 1000);
        let batches = validate_produced(&b, 1 << 20).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].header.records_count, 3);
        let plain = Stamp {
            base_offset: 42,
            leader_epoch: 7,
            log_append_time_ms: None,
        };
        let s = stamped(&b, plain);
        let h = BatchHeader::parse(&s).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.partition_leader_epoch),
            (42, 44, 7)
        );
        assert!(crc_matches(&s), "epoch and offset are outside the CRC");
        assert_eq!(h.crc, BatchHeader::parse(&b).unwrap().crc);
        let s = stamped(
            &b,
            Stamp {
                log_append_time_ms: Some(5555),
                ..plain
            },
        );
        let h = BatchHeader::parse(&s).unwrap();
        assert_eq!(h.max_timestamp, 5555);
        assert!(crc_matches(&s), "LogAppendTime recomputes the CRC");
    }

    #[test]
    fn rejects_bad_input() {
        let good = make_batch(2, 5, 0);
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        assert!(matches!(
            validate_produced(&bad_crc, 1 << 20),
            Err(StorageError::CorruptMessage(_))
        ));
        assert!(matches!(
            validate_produced(&good[..40], 1 << 20),
            Err(StorageError::CorruptMessage(_))
        ));
        assert!(matches!(
            validate_produced(&good, 10),
            Err(StorageError::MessageTooLarge(_))
        ));
        let mut magic1 = good.clone();
        magic1[MAGIC] = 1;
        assert!(matches!(
            validate_produced(&magic1, 1 << 20),
            Err(StorageError::UnsupportedMessageFormat(_))
        ));
        // Every truncation of a valid batch is refused without a panic.
        for cut in 0..good.len() {
            let _ = validate_produced(&good[..cut], 1 << 20);
        }
    }

    #[test]
    fn iterates_complete_batches_only() {
        let mut buf = make_batch(1, 3, 0);
        buf.extend(make_batch(2, 3, 0));
        let full = buf.len();
        buf.extend(&make_batch(1, 3, 0)[..30]);
        let mut it = BatchIter::new(&buf);
        assert_eq!(it.by_ref().count(), 2);
        assert_eq!(it.position(), full);
    }

    #[test]
    fn control_batch_round_trip() {
        for (kind, epoch) in [(ControlRecord::ABORT, 7), (ControlRecord::COMMIT, -1)] {
            let rec = ControlRecord {
                kind,
                coordinator_epoch: epoch,
            };
            let b = build_control_batch(42, 3, rec, 1234);
            let batches = validate_produced(&b, 1 << 20).unwrap();
            let h = batches[0].header;
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(h.records_count, 1);
            assert_eq!(parse_control_record(&b), Some(rec));
            for cut in 0..b.len() {
                let _ = parse_control_record(&b[..cut]);
            }
        }
        assert_eq!(parse_control_record(&make_batch(1, 3, 0)), None);
    }

    #[test]
    fn sequence_wraps() {
        let mut h = BatchHeader::parse(&make_batch(3, 1, 0)).unwrap();
        h.base_sequence = i32::MAX - 1;
        assert_eq!(h.last_sequence(), 0);
    }
}
