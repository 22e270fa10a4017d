//! ListOffsets (earliest, latest, by time, max timestamp), OffsetForLeaderEpoch, DeleteRecords.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use sluice_storage::{BatchHeader, SegmentSlice};

use crate::broker::Broker;
use crate::error::KafkaError;
use crate::record_codec;
use crate::replica_manager::Replica;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
/// Attribute bit: the batch's timestamps are the broker's append time.
const LOG_APPEND_TIME_BIT: i16 = 0x08;

/// Within one stored batch, the first record at or after `target` (or, for `None`, the first
/// record with the batch's largest timestamp, as Kafka's `offsetOfMaxTimestamp`): its
/// (offset, timestamp).
///
/// The header answers without decoding when it can: with LogAppendTime every record has the
/// batch's time; a single record is the answer; Kafka's producers set `baseTimestamp` to the
/// first record's timestamp, so a batch starting at or after `target` (or whose first record
/// has the maximum) answers with its base offset. Otherwise the records are walked — in
/// place if uncompressed, else decompressed under `cap` (the topic's `max.message.bytes`).
/// A batch that cannot be decoded within the cap (a decompression bomb, a broken frame)
/// answers with its start, which is safe: a consumer seeking there skips what it does not want.
fn locate_in_batch(
    slice: &SegmentSlice,
    target: Option<i64>,
    cap: usize,
) -> Result<Option<(i64, i64)>, KafkaError> {
    let bytes = slice.load()?;
    let Some(header) = BatchHeader::parse(&bytes) else {
        return Ok(None);
    };
    let start = Some((header.base_offset, header.max_timestamp));
    let compressed = header.compression() != 0;
    if header.attributes & LOG_APPEND_TIME_BIT != 0 || header.records_count == 1 {
        return Ok(start);
    }
    if compressed {
        match target {
            Some(t) if header.base_timestamp >= t => {
                return Ok(Some((header.base_offset, header.base_timestamp)))
            }
            None if header.base_timestamp == header.max_timestamp => return Ok(start),
            _ => {}
        }
    }
    let mut scratch = Vec::new();
    let Ok(section) = record_codec::records_section(&bytes, &header, cap, &mut scratch) else {
        return Ok(start);
    };
    let mut best: Option<(i64, i64)> = None;
    for r in record_codec::records(section, header.records_count) {
        let Ok(r) = r else { return Ok(start) };
        let found = (
            header.base_offset.saturating_add(r.offset_delta),
            header.base_timestamp.saturating_add(r.timestamp_delta),
        );
        match target {
            Some(t) if found.1 >= t => return Ok(Some(found)),
            Some(_) => {}
            None => {
                if best.is_none_or(|b| found.1 > b.1) {
                    best = Some(found);
                }
            }
        }
    }
    Ok(best)
}

/// One partition's answer. With `read_committed` (ListOffsets v2+, isolation_level 1) the
/// latest offset is the last stable offset, and a lookup by time (or max timestamp) that lands
/// at or past it answers "none" (-1), as Kafka does: undecided offsets are never returned.
fn list_one(
    partition: &Replica,
    timestamp: i64,
    cap: usize,
    read_committed: bool,
) -> Result<(i64, i64), KafkaError> {
    let marks = partition.watermarks();
    let (offset, ts) = list_uncommitted(partition, timestamp, cap, marks)?;
    if !read_committed {
        return Ok((offset, ts));
    }
    Ok(match timestamp {
        LATEST | LATEST_TIERED => (marks.last_stable_offset, -1),
        EARLIEST | EARLIEST_LOCAL => (offset, ts),
        _ if offset >= marks.last_stable_offset => (-1, -1),
        _ => (offset, ts),
    })
}

fn list_uncommitted(
    partition: &Replica,
    timestamp: i64,
    cap: usize,
    marks: crate::replica_manager::Watermarks,
) -> Result<(i64, i64), KafkaError> {
    Ok(match timestamp {
        LATEST | LATEST_TIERED => (marks.high_watermark, -1),
        EARLIEST | EARLIEST_LOCAL => (marks.log_start_offset, -1),
        MAX_TIMESTAMP => match partition.max_timestamp_batch()? {
            Some((_, slice)) => locate_in_batch(&slice, None, cap)?.unwrap_or((-1, -1)),
            None => (-1, -1),
        },
        t if t >= 0 => match partition.find_by_timestamp(t)? {
            Some(slice) => {
                let (offset, ts) = locate_in_batch(&slice, Some(t), cap)?.unwrap_or((-1, -1));
                // A batch straddling the log start: never answer below it.
                if offset >= 0 && offset < marks.log_start_offset {
                    (marks.log_start_offset, ts)
                } else {
                    (offset, ts)
                }
            }
            None => (-1, -1),
        },
        other => {
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                format!("unknown ListOffsets timestamp {other}"),
            ))
        }
    })
}

pub fn list_offsets(broker: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    // isolation_level is on the wire from v2.
    let read_committed = version >= 2 && req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            // Decompression inside a batch stops at the topic's max.message.bytes.
            let cap = broker
                .metadata
                .topic(&name)
                .map(|t| t.configs.decompression_cap())
                .unwrap_or(0);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let partition = match broker.replica(&name, p.partition_index) {
                        Ok(r) => r,
                        Err(e) => return resp.with_error_code(e.code),
                    };
                    // KIP-320 (v4+; -1 before): the client's leader epoch against ours.
                    let role = match partition.check_leader(p.current_leader_epoch) {
                        Ok(role) => role,
                        Err(e) => return resp.with_error_code(e.code),
                    };
                    // Leader epochs are on the wire from v4.
                    let epoch = if version >= 4 {
                        role.leader_epoch()
                    } else {
                        -1
                    };
                    // KIP-207: a new leader whose HW has not reached the start of its epoch
                    // may not yet know what its predecessor committed: OFFSET_NOT_AVAILABLE
                    // (retriable) for everything but EARLIEST.
                    if p.timestamp != -2 {
                        if let Some(start) = partition.epoch_start_offset() {
                            if partition.watermarks().high_watermark < start {
                                return resp
                                    .with_error_code(ResponseError::OffsetNotAvailable.code());
                            }
                        }
                    }
                    match list_one(&partition, p.timestamp, cap, read_committed) {
                        Ok((offset, ts)) => resp
                            .with_offset(offset)
                            .with_timestamp(ts)
                            .with_leader_epoch(epoch),
                        Err(e) => resp.with_error_code(e.code),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Kafka's `lastOffsetForLeaderEpoch` on the leader: from the partition's leader-epoch cache
/// (`Log::end_offset_for`): the largest epoch at or below the requested one and its end
/// offset; the latest epoch ends at the log end; unknown → UNDEFINED (-1, -1). Advertised
/// v2–v4 (the Java consumer validates positions only with v3+).
pub fn offset_for_leader_epoch(
    broker: &Broker,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let partition = match broker.replica(&name, p.partition) {
                        Ok(r) => r,
                        Err(e) => return resp.with_error_code(e.code),
                    };
                    let epoch = match partition.check_leader(p.current_leader_epoch) {
                        Ok(role) => role.leader_epoch(),
                        Err(e) => return resp.with_error_code(e.code),
                    };
                    // The epoch cache: the largest epoch at or below the requested one and
                    // where it ends (the log end for the latest). The current epoch always
                    // ends at the log end, even before its first batch.
                    let (e, end) = partition.end_offset_for(p.leader_epoch);
                    if e < 0 && p.leader_epoch == epoch {
                        return resp
                            .with_leader_epoch(epoch)
                            .with_end_offset(partition.watermarks().log_end_offset);
                    }
                    resp.with_leader_epoch(e).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

pub fn delete_records(broker: &Broker, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let partition = match broker.replica(&name, p.partition_index) {
                        Ok(r) => r,
                        Err(e) => return resp.with_error_code(e.code),
                    };
                    // -1 means "up to the high watermark", as in Kafka.
                    match partition.delete_records_before(p.offset) {
                        Ok(low) => resp.with_low_watermark(low),
                        Err(e) => resp.with_error_code(e.code),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
