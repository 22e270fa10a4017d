//! Reading and writing individual records where the broker must (dead letters): a small codec
//! of Kafka's record format v2 that keeps every header as sent — repeated keys included, which
//! the protocol crate's `Record` (a header map) would collapse.
//!
//! Decoding decompresses with the protocol crate's codecs; encoding writes one uncompressed
//! batch. The produce and fetch paths never use this: they keep batches as clients sent them.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use sluice_storage::BatchIter;

/// Records larger than this in a decompressed batch are refused (a hostile or corrupt batch
/// must not make the broker allocate without bound).
const MAX_DECOMPRESSED: usize = 256 << 20;
const BATCH_HEADER_LEN: usize = 61;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

fn read_varlong(buf: &mut Bytes) -> Result<i64, String> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err("truncated varint".into());
        }
        let b = buf.get_u8();
        value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err("varint too long".into())
}

fn read_bytes(buf: &mut Bytes) -> Result<Option<Bytes>, String> {
    let len = read_varlong(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| "bad length")?;
    if len > buf.remaining() {
        return Err("length beyond the record".into());
    }
    Ok(Some(buf.split_to(len)))
}

fn decompress(codec: i16, data: Bytes) -> Result<Bytes, String> {
    let mut data = data;
    let take = |b: &mut Bytes| -> anyhow::Result<Bytes> {
        if b.len() > MAX_DECOMPRESSED {
            anyhow::bail!("decompressed batch over {MAX_DECOMPRESSED} bytes");
        }
        Ok(b.clone())
    };
    let out = match codec {
        0 => Ok(data),
        1 => Gzip::decompress(&mut data, take),
        2 => Snappy::decompress(&mut data, take),
        3 => Lz4::decompress(&mut data, take),
        4 => Zstd::decompress(&mut data, take),
        c => return Err(format!("unknown compression codec {c}")),
    };
    out.map_err(|e| e.to_string())
}

/// Every record of the whole batches in `bytes` (a trailing partial batch is ignored).
pub fn decode(bytes: &[u8]) -> Result<Vec<RawRecord>, String> {
    let mut out = Vec::new();
    for (at, h) in BatchIter::new(bytes) {
        if h.is_control() {
            continue;
        }
        let body = bytes
            .get(at + BATCH_HEADER_LEN..at + h.total_len())
            .ok_or("batch shorter than its header")?;
        let mut buf = decompress(h.compression(), Bytes::copy_from_slice(body))?;
        for _ in 0..h.records_count.max(0) {
            let len = read_varlong(&mut buf)?;
            let len = usize::try_from(len).map_err(|_| "negative record length")?;
            if len > buf.remaining() {
                return Err("record longer than its batch".into());
            }
            let mut r = buf.split_to(len);
            if !r.has_remaining() {
                return Err("empty record".into());
            }
            r.advance(1); // attributes
            let ts_delta = read_varlong(&mut r)?;
            let offset_delta = read_varlong(&mut r)?;
            let key = read_bytes(&mut r)?;
            let value = read_bytes(&mut r)?;
            let count = read_varlong(&mut r)?;
            if count < 0 || count as usize > r.remaining() {
                return Err("bad header count".into());
            }
            let mut headers = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let k = read_bytes(&mut r)?.ok_or("null header key")?;
                let v = read_bytes(&mut r)?;
                headers.push((k, v));
            }
            out.push(RawRecord {
                offset: h.base_offset.saturating_add(offset_delta),
                timestamp: h.base_timestamp.saturating_add(ts_delta),
                key,
                value,
                headers,
            });
        }
    }
    Ok(out)
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
/// producer id), ready for `Partition::append`.
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
        assert_eq!(decode(&batch).unwrap(), records);
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
        assert!(decode(&batch).is_err());
        assert!(
            decode(&[1, 2, 3]).unwrap().is_empty(),
            "no whole batch, no records"
        );
    }
}
