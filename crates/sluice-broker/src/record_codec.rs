//! Reading and writing individual records where the broker must: schema validation on produce,
//! recompression to a topic's `compression.type`, ListOffsets inside a batch, dead letters.
//! A small codec of Kafka's record format v2 that keeps every header as sent — repeated keys
//! included, which the protocol crate's `Record` (a header map) would collapse.
//!
//! Decompression goes through [`crate::compression`], always under a cap (the topic's
//! `max.message.bytes`). Reading borrows: [`records`] walks a batch's records section and
//! yields [`RecordView`]s pointing into it, with no allocation per record, so the produce
//! path's validation costs one buffer per compressed batch and nothing per record. The plain
//! produce and fetch paths never come here: they keep batches as clients sent them.

use bytes::{Bytes, BytesMut};
use sluice_storage::{BatchHeader, BatchIter};

use crate::compression::{self, Codec, DecompressError, Levels};

pub const BATCH_HEADER_LEN: usize = sluice_storage::records::BATCH_HEADER_LEN;
/// Where a batch's attributes start: the CRC covers from here to the end.
const ATTRIBUTES_AT: usize = 21;
const CRC_AT: usize = 17;
const BATCH_LENGTH_AT: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

fn read_varlong(buf: &mut &[u8]) -> Result<i64, String> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err("varint too long".into())
}

fn read_bytes<'a>(buf: &mut &'a [u8]) -> Result<Option<&'a [u8]>, String> {
    let len = read_varlong(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| "bad length")?;
    if len > buf.len() {
        return Err("length beyond the record".into());
    }
    let (b, rest) = buf.split_at(len);
    *buf = rest;
    Ok(Some(b))
}

/// One record, borrowed from its batch's (decompressed) records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset_delta: i64,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub header_count: usize,
    /// The headers' bytes, already checked to hold `header_count` well-formed headers.
    headers: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The headers in order, repeated keys kept.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
        let mut buf = self.headers;
        (0..self.header_count).map_while(move |_| {
            let k = read_bytes(&mut buf).ok()??;
            let v = read_bytes(&mut buf).ok()?;
            Some((k, v))
        })
    }
}

/// Parses one record's body (after its length): every field, headers walked and checked.
/// The body must be consumed exactly, as Kafka's `DefaultRecord.readFrom` requires.
fn parse_record(mut r: &[u8]) -> Result<RecordView<'_>, String> {
    let (_attributes, rest) = r.split_first().ok_or("empty record")?;
    r = rest;
    let timestamp_delta = read_varlong(&mut r)?;
    let offset_delta = read_varlong(&mut r)?;
    let key = read_bytes(&mut r)?;
    let value = read_bytes(&mut r)?;
    let count = read_varlong(&mut r)?;
    // Every header takes at least two bytes (two varint lengths).
    let header_count = usize::try_from(count)
        .ok()
        .filter(|c| c.saturating_mul(2) <= r.len())
        .ok_or("bad header count")?;
    let headers = r;
    for _ in 0..header_count {
        read_bytes(&mut r)?.ok_or("null header key")?;
        read_bytes(&mut r)?;
    }
    if !r.is_empty() {
        return Err(format!("{} bytes left over after a record", r.len()));
    }
    let headers = headers.get(..headers.len() - r.len()).unwrap_or_default();
    Ok(RecordView {
        offset_delta,
        timestamp_delta,
        key,
        value,
        header_count,
        headers,
    })
}

/// Walks the records of a records section (the decompressed bytes after a batch header).
pub struct Records<'a> {
    buf: &'a [u8],
    left: i32,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left <= 0 {
            return None;
        }
        self.left -= 1;
        let step = (|| {
            let len = read_varlong(&mut self.buf)?;
            let len = usize::try_from(len).map_err(|_| "negative record length")?;
            if len > self.buf.len() {
                return Err("record longer than its batch".to_string());
            }
            let (r, rest) = self.buf.split_at(len);
            self.buf = rest;
            parse_record(r)
        })();
        if step.is_err() {
            self.left = 0;
        }
        Some(step)
    }
}

impl Records<'_> {
    /// Bytes after the records walked so far.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
}

/// The `count` records of `section`.
pub fn records(section: &[u8], count: i32) -> Records<'_> {
    Records {
        buf: section,
        left: count,
    }
}

/// Checks that `section` holds exactly `count` well-formed records (Kafka's checks when it
/// reads a batch: each record's length, and nothing left over).
pub fn check_records(section: &[u8], count: i32) -> Result<(), String> {
    let mut it = records(section, count);
    for r in it.by_ref() {
        r?;
    }
    if it.remaining() != 0 {
        return Err(format!(
            "batch declares {count} records but {} bytes remain after them",
            it.remaining()
        ));
    }
    Ok(())
}

/// The records section of one whole batch (`batch` starts with its header): borrowed as is
/// when uncompressed, else decompressed into `scratch` (cleared first) under `cap` bytes.
pub fn records_section<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    cap: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], DecompressError> {
    let body = batch
        .get(BATCH_HEADER_LEN..header.total_len())
        .ok_or_else(|| DecompressError::Corrupt("batch shorter than its header says".into()))?;
    let codec = Codec::from_id(header.compression()).ok_or_else(|| {
        DecompressError::Corrupt(format!(
            "unknown compression codec {}",
            header.compression()
        ))
    })?;
    if codec == Codec::None {
        return Ok(body);
    }
    scratch.clear();
    compression::decompress(codec, body, cap, scratch)?;
    Ok(scratch.as_slice())
}

/// Every record of one whole batch, appended to `out` (nothing for a control batch).
pub fn decode_batch(
    batch: &[u8],
    header: &BatchHeader,
    cap: usize,
    out: &mut Vec<RawRecord>,
) -> Result<(), DecompressError> {
    if header.is_control() {
        return Ok(());
    }
    let mut scratch = Vec::new();
    let section = records_section(batch, header, cap, &mut scratch)?;
    // One owned copy of the section; every key, value and header slices it.
    let owned = Bytes::copy_from_slice(section);
    let bytes = |b: &[u8]| owned.slice_ref(b);
    let start = out.len();
    for r in records(&owned, header.records_count) {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                out.truncate(start);
                return Err(DecompressError::Corrupt(e));
            }
        };
        out.push(RawRecord {
            offset: header.base_offset.saturating_add(r.offset_delta),
            timestamp: header.base_timestamp.saturating_add(r.timestamp_delta),
            key: r.key.map(bytes),
            value: r.value.map(bytes),
            headers: r.headers().map(|(k, v)| (bytes(k), v.map(bytes))).collect(),
        });
    }
    Ok(())
}

/// Every record of the whole batches in `bytes` (a trailing partial batch is ignored), each
/// batch decompressed under `cap` bytes.
pub fn decode(bytes: &[u8], cap: usize) -> Result<Vec<RawRecord>, DecompressError> {
    let mut out = Vec::new();
    for (at, h) in BatchIter::new(bytes) {
        decode_batch(bytes.get(at..).unwrap_or_default(), &h, cap, &mut out)?;
    }
    Ok(out)
}

/// Rewrites one whole batch (CRC already checked by the caller) with the `target` codec:
/// every header field kept — offsets delta, timestamps, producer id, epoch and base sequence —
/// but the codec bits, the length and the CRC, which are recomputed. The records are
/// decompressed under `cap` and checked before they are recompressed, so a broken batch is
/// refused rather than stored under a fresh, valid CRC. Appends to `out`.
pub fn recompress(
    batch: &[u8],
    header: &BatchHeader,
    target: Codec,
    levels: Levels,
    cap: usize,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), DecompressError> {
    let section = records_section(batch, header, cap, scratch)?;
    check_records(section, header.records_count).map_err(DecompressError::Corrupt)?;
    let head = batch
        .get(..BATCH_HEADER_LEN)
        .ok_or_else(|| DecompressError::Corrupt("batch shorter than its header".into()))?;
    let start = out.len();
    out.extend_from_slice(head);
    compression::compress(target, levels, section, out).map_err(DecompressError::Corrupt)?;
    let batch_length = i32::try_from(out.len() - start - BATCH_LENGTH_AT - 4)
        .map_err(|_| DecompressError::TooLarge(cap))?;
    let attributes = (header.attributes & !0x07) | target.id();
    let new = out.get_mut(start..).unwrap_or_default();
    if let Some(b) = new.get_mut(BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4) {
        b.copy_from_slice(&batch_length.to_be_bytes());
    }
    if let Some(b) = new.get_mut(ATTRIBUTES_AT..ATTRIBUTES_AT + 2) {
        b.copy_from_slice(&attributes.to_be_bytes());
    }
    let crc = crc32c::crc32c(new.get(ATTRIBUTES_AT..).unwrap_or_default());
    if let Some(b) = new.get_mut(CRC_AT..CRC_AT + 4) {
        b.copy_from_slice(&crc.to_be_bytes());
    }
    Ok(())
}

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.extend_from_slice(&[(z as u8 & 0x7f) | 0x80]);
        z >>= 7;
    }
    out.extend_from_slice(&[z as u8]);
}

fn put_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// One uncompressed v2 batch of `records` (offsets relative from 0, CreateTime timestamps, no
/// producer id), ready for `Replica::append_as_leader`.
pub fn encode(records: &[RawRecord]) -> Vec<u8> {
    let base_ts = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let mut body = BytesMut::new();
    for (i, r) in records.iter().enumerate() {
        let mut rec = BytesMut::new();
        rec.extend_from_slice(&[0]);
        put_varlong(&mut rec, r.timestamp - base_ts);
        put_varlong(&mut rec, i as i64);
        put_bytes(&mut rec, r.key.as_deref());
        put_bytes(&mut rec, r.value.as_deref());
        put_varlong(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut rec, Some(k));
            put_bytes(&mut rec, v.as_deref());
        }
        put_varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset (the log assigns it)
    out.extend_from_slice(&((BATCH_HEADER_LEN - 12 + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    let crc_at = out.len();
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression, CreateTime
    out.extend_from_slice(&(records.len().saturating_sub(1) as i32).to_be_bytes());
    out.extend_from_slice(&base_ts.to_be_bytes());
    out.extend_from_slice(&max_ts.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    out.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&(records.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out[crc_at + 4..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_repeated_headers_and_nulls() {
        let records = vec![
            RawRecord {
                offset: 0,
                timestamp: 1_000,
                key: Some(Bytes::from_static(b"k")),
                value: None,
                headers: vec![
                    (Bytes::from_static(b"dup"), Some(Bytes::from_static(b"1"))),
                    (Bytes::from_static(b"x"), None),
                    (Bytes::from_static(b"dup"), Some(Bytes::from_static(b"2"))),
                ],
            },
            RawRecord {
                offset: 1,
                timestamp: 900,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: vec![],
            },
        ];
        let batch = encode(&records);
        assert!(sluice_storage::BatchHeader::parse(&batch).is_some());
        assert_eq!(decode(&batch, 1 << 20).unwrap(), records);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut batch = encode(&[RawRecord {
            offset: 0,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"abc")),
            headers: vec![],
        }]);
        let n = batch.len();
        // The value's length (zig-zag 3 = 0x06) becomes 63: past the end of the record.
        assert_eq!(batch[n - 5], 0x06);
        batch[n - 5] = 0x7e;
        assert!(decode(&batch, 1 << 20).is_err());
        assert!(
            decode(&[1, 2, 3], 1 << 20).unwrap().is_empty(),
            "no whole batch, no records"
        );
    }

    fn sample(n: usize) -> Vec<RawRecord> {
        (0..n)
            .map(|i| RawRecord {
                offset: i as i64,
                timestamp: 5_000 + (i as i64 % 7) * 10,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; 300])),
                headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from(format!("{i}"))))],
            })
            .collect()
    }

    /// A batch as an idempotent producer would send it.
    fn with_producer(mut batch: Vec<u8>) -> Vec<u8> {
        batch[43..51].copy_from_slice(&77i64.to_be_bytes());
        batch[51..53].copy_from_slice(&3i16.to_be_bytes());
        batch[53..57].copy_from_slice(&1000i32.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    #[test]
    fn recompression_keeps_records_and_header_fields() {
        let records = sample(500);
        let plain = with_producer(encode(&records));
        let h0 = BatchHeader::parse(&plain).unwrap();
        let mut scratch = Vec::new();
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let mut packed = Vec::new();
            recompress(
                &plain,
                &h0,
                codec,
                Levels::DEFAULT,
                1 << 20,
                &mut scratch,
                &mut packed,
            )
            .unwrap();
            let h = BatchHeader::parse(&packed).unwrap();
            assert_eq!(h.compression(), codec.id());
            assert_eq!(h.total_len(), packed.len());
            assert!(packed.len() < plain.len() / 2, "{codec:?} compresses");
            assert_eq!(h.crc, crc32c::crc32c(&packed[21..]));
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (77, 3, 1000)
            );
            assert_eq!(
                (
                    h.base_timestamp,
                    h.max_timestamp,
                    h.last_offset_delta,
                    h.records_count
                ),
                (
                    h0.base_timestamp,
                    h0.max_timestamp,
                    h0.last_offset_delta,
                    h0.records_count
                )
            );
            assert_eq!(decode(&packed, 1 << 20).unwrap(), records);
            // And back to uncompressed: the very bytes we started from.
            let mut back = Vec::new();
            recompress(
                &packed,
                &h,
                Codec::None,
                Levels::DEFAULT,
                1 << 20,
                &mut scratch,
                &mut back,
            )
            .unwrap();
            assert_eq!(back, plain);
            // Under a cap smaller than the records: refused, nothing written past the cap.
            let mut out = Vec::new();
            assert_eq!(
                recompress(
                    &packed,
                    &h,
                    Codec::None,
                    Levels::DEFAULT,
                    10_000,
                    &mut scratch,
                    &mut out
                ),
                Err(DecompressError::TooLarge(10_000))
            );
            assert!(scratch.capacity() <= 1 << 20);
        }
    }

    #[test]
    fn recompression_refuses_a_record_count_the_records_do_not_match() {
        let mut plain = encode(&sample(3));
        // Claim 2 records: the third is left over.
        plain[57..61].copy_from_slice(&2i32.to_be_bytes());
        let h = BatchHeader::parse(&plain).unwrap();
        let mut out = Vec::new();
        let err = recompress(
            &plain,
            &h,
            Codec::Zstd,
            Levels::DEFAULT,
            1 << 20,
            &mut Vec::new(),
            &mut out,
        )
        .unwrap_err();
        assert!(
            matches!(err, DecompressError::Corrupt(ref m) if m.contains("remain")),
            "{err:?}"
        );
    }

    #[test]
    fn views_borrow_and_walk_headers() {
        let sent = sample(3);
        let batch = encode(&sent);
        let h = BatchHeader::parse(&batch).unwrap();
        let mut scratch = Vec::new();
        let section = records_section(&batch, &h, 1 << 20, &mut scratch).unwrap();
        let views: Vec<_> = records(section, h.records_count)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(views.len(), 3);
        assert_eq!(views[2].key, Some(&b"key-2"[..]));
        assert_eq!(views[2].offset_delta, 2);
        assert_eq!(
            views[1].headers().collect::<Vec<_>>(),
            vec![(&b"h"[..], Some(&b"1"[..]))]
        );
        assert!(check_records(section, 3).is_ok());
        assert!(check_records(section, 4).is_err());
    }
}
