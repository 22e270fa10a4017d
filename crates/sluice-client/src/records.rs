//! Record batches: building them for Produce and reading them out of Fetch responses, plus
//! the Java client's key partitioner so keyed records land where Kafka clients put them.

use bytes::{Buf, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

use crate::error::{Error, Result};

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl ProduceRecord {
    pub fn approximate_size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + 16
    }
}

/// Encodes one v2 record batch (no producer id: not idempotent) stamped with `timestamp_ms`.
pub fn build_batch(
    records: &[ProduceRecord],
    compression: Compression,
    timestamp_ms: i64,
) -> Result<Bytes> {
    encode_batch(records.iter().map(|r| (timestamp_ms, r)), compression)
}

/// Encodes one v2 record batch in which each record keeps its own CreateTime (ms), as when
/// records are copied back to a topic with their original timestamps.
pub fn build_batch_timed(
    records: &[(i64, ProduceRecord)],
    compression: Compression,
) -> Result<Bytes> {
    encode_batch(records.iter().map(|(t, r)| (*t, r)), compression)
}

fn encode_batch<'a>(
    records: impl Iterator<Item = (i64, &'a ProduceRecord)>,
    compression: Compression,
) -> Result<Bytes> {
    let records: Vec<Record> = records
        .enumerate()
        .map(|(i, (timestamp, r))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            // Offsets in a produced batch are relative; the broker assigns the real ones.
            offset: i as i64,
            // kafka-protocol starts a new batch whenever `offset - sequence` changes, so the
            // sequence must advance with the offset to keep every record in ONE batch (Kafka
            // refuses a Produce with several batches per partition: INVALID_RECORD). The
            // batch's base sequence stays NO_SEQUENCE (-1): not idempotent.
            sequence: NO_SEQUENCE.wrapping_add(i32::try_from(i).unwrap_or(i32::MAX)),
            timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| Error::Invalid(format!("cannot encode a record batch: {e}")))?;
    Ok(buf.freeze())
}

/// Decodes the complete batches in a Fetch response's `records`. A broker may cut the last
/// batch short at the fetch size limit; that tail is dropped and fetched again next time.
/// Control records (transaction markers) are skipped, as consumers do.
pub fn decode_fetched(data: Bytes) -> std::result::Result<Vec<Record>, String> {
    decode_fetched_batches(data).map(|(records, _)| records)
}

/// [`decode_fetched`], also returning the offset after the last complete batch (its base
/// offset + last offset delta + 1), `None` when no batch was complete. A reader continues from
/// there: past batches of control records only, and past records compaction removed from the
/// end of a batch, neither of which leaves a record to continue after.
pub fn decode_fetched_batches(
    mut data: Bytes,
) -> std::result::Result<(Vec<Record>, Option<i64>), String> {
    let mut out = Vec::new();
    let mut next = None;
    // Batch header: base offset (8), batch length (4), then `batch length` bytes.
    while data.len() >= 12 {
        let batch_len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let Ok(batch_len) = usize::try_from(batch_len) else {
            return Err(format!("negative batch length {batch_len}"));
        };
        let total = 12 + batch_len;
        if data.len() < total {
            break;
        }
        if data.len() < 17 {
            return Err("batch shorter than its header".into());
        }
        let magic = data[16];
        let mut batch = data.split_to(total);
        // v2 header: base offset (8), length (4), leader epoch (4), magic (1), crc (4),
        // attributes (2), last offset delta (4).
        if magic == 2 && batch.len() >= 27 {
            let base = i64::from_be_bytes([
                batch[0], batch[1], batch[2], batch[3], batch[4], batch[5], batch[6], batch[7],
            ]);
            let delta = i32::from_be_bytes([batch[23], batch[24], batch[25], batch[26]]);
            next = Some(base.saturating_add(i64::from(delta)).saturating_add(1));
        }
        if magic != 2 {
            // Message sets v0/v1 predate record batches; skip rather than misread them.
            batch.advance(total);
            continue;
        }
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| e.to_string())?;
        out.extend(set.records.into_iter().filter(|r| !r.control));
    }
    Ok((out, next))
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), used by its default partitioner.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for a keyed record.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: Option<&'static str>, v: &'static str) -> ProduceRecord {
        ProduceRecord {
            key: k.map(|k| Bytes::from_static(k.as_bytes())),
            value: Some(Bytes::from_static(v.as_bytes())),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
        }
    }

    /// Kafka takes exactly one batch per partition in a Produce request (v3+); a batch that
    /// kafka-protocol split into one batch per record was refused with INVALID_RECORD.
    #[test]
    fn many_records_make_one_batch_without_a_sequence() {
        let input: Vec<ProduceRecord> = (0..5).map(|_| rec(None, "v")).collect();
        for c in [Compression::None, Compression::Zstd] {
            let batch = build_batch(&input, c, 1_700_000_000_000).unwrap();
            // Header: base offset (8), length (4): one batch spans the whole buffer.
            let len = i32::from_be_bytes([batch[8], batch[9], batch[10], batch[11]]);
            assert_eq!(usize::try_from(len).unwrap() + 12, batch.len(), "{c:?}");
            // Base sequence (offset 53) is -1: not idempotent.
            assert_eq!(
                i32::from_be_bytes([batch[53], batch[54], batch[55], batch[56]]),
                -1
            );
            // Record count (offset 57).
            assert_eq!(
                i32::from_be_bytes([batch[57], batch[58], batch[59], batch[60]]),
                5
            );
        }
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        let input = vec![
            rec(Some("k1"), "one"),
            rec(None, "two"),
            rec(Some("k3"), ""),
        ];
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = build_batch(&input, c, 1_700_000_000_000).unwrap();
            let out = decode_fetched(batch).unwrap();
            assert_eq!(out.len(), 3, "{c:?}");
            assert_eq!(out[0].offset, 0);
            assert_eq!(out[2].offset, 2);
            assert_eq!(out[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(out[1].key, None);
            assert_eq!(out[1].value.as_deref(), Some(&b"two"[..]));
            assert_eq!(out[0].timestamp, 1_700_000_000_000);
            assert_eq!(out[0].headers.len(), 1);
        }
    }

    #[test]
    fn timed_batches_keep_each_timestamp() {
        let input = vec![
            (1_700_000_000_500, rec(Some("a"), "1")),
            (1_700_000_000_000, rec(None, "2")),
            (1_700_000_009_000, rec(Some("c"), "3")),
        ];
        let out = decode_fetched(build_batch_timed(&input, Compression::None).unwrap()).unwrap();
        let ts: Vec<i64> = out.iter().map(|r| r.timestamp).collect();
        assert_eq!(
            ts,
            [1_700_000_000_500, 1_700_000_000_000, 1_700_000_009_000]
        );
        assert_eq!(out[2].headers.len(), 1);
    }

    #[test]
    fn truncated_tail_is_dropped() {
        let a = build_batch(&[rec(None, "a")], Compression::None, 0).unwrap();
        let b = build_batch(&[rec(None, "b")], Compression::None, 0).unwrap();
        let mut both = BytesMut::new();
        both.extend_from_slice(&a);
        both.extend_from_slice(&b[..b.len() - 3]);
        let out = decode_fetched(both.freeze()).unwrap();
        assert_eq!(out.len(), 1);
        assert!(decode_fetched(Bytes::from_static(b"short"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
        assert!((0..3).contains(&partition_for_key(b"any", 3)));
    }
}
