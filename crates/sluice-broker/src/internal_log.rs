//! Internal logs (cluster metadata, committed offsets): JSON events written as ordinary record
//! batches to a partition log of their own, replayed in order on start. They share the
//! storage engine, recovery and group commit with user data, so they will replicate the same way.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::KafkaError;

/// One internal record: an optional key and an optional value (None = tombstone).
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);
use crate::partition::Partition;
use kafka_protocol::error::ResponseError;

fn encode_error(e: impl std::fmt::Display) -> KafkaError {
    KafkaError::new(
        ResponseError::UnknownServerError,
        format!("internal record encoding: {e}"),
    )
}

/// Encodes key/value pairs as one uncompressed batch.
pub fn encode_batch(records: &[KeyValue], now_ms: i64) -> Result<BytesMut, KafkaError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now_ms,
            key: k.clone().map(Bytes::from),
            value: v.clone().map(Bytes::from),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(encode_error)?;
    Ok(buf)
}

/// Appends records to an internal log and waits until they are on disk: internal state is
/// always fsynced, whatever the flush policy for user data.
pub async fn append_durably(
    log: &Partition,
    records: &[KeyValue],
    now_ms: i64,
) -> Result<i64, KafkaError> {
    let buf = encode_batch(records, now_ms)?;
    let appended = log.append(&buf, now_ms)?;
    log.make_durable(appended.last_offset + 1).await?;
    Ok(appended.last_offset)
}

/// Calls `apply` with every record of the log, in order.
pub fn replay(
    log: &Partition,
    mut apply: impl FnMut(Option<&[u8]>, Option<&[u8]>),
) -> Result<(), KafkaError> {
    let bytes = log.read_all(0)?;
    let mut buf = Bytes::from(bytes);
    let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| {
        KafkaError::new(
            ResponseError::CorruptMessage,
            format!("internal log unreadable: {e}"),
        )
    })?;
    for set in sets {
        for r in set.records {
            apply(r.key.as_deref(), r.value.as_deref());
        }
    }
    Ok(())
}
