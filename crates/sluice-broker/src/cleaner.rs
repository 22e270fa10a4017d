//! The log cleaner (Kafka's `LogCleaner` thread): compacts the partitions of topics whose
//! `cleanup.policy` includes `compact` (docs/COMPACTION.md).
//!
//! Every `--log-cleaner-backoff-ms` it looks for the dirtiest log (Kafka's
//! `grabFilthiestCompactedLog`): a partition is due when its dirty ratio is above
//! `min.cleanable.dirty.ratio`, when its oldest dirty batch is older than
//! `max.compaction.lag.ms`, or when a delete horizon of its last cleaning passed (tombstones or
//! transaction markers to drop). It cleans logs back to back (at most `LOG_CLEANER_MAX_ROUNDS_IN_A_ROW`) while some are
//! due, then backs off. One round of one partition:
//! 1. under the partition lock: the cleanable range (bounded by the last stable offset, the
//!    active segment and `min.compaction.lag.ms`) and the segments to rewrite;
//! 2. without it, on the blocking pool: the offset map and the recopy into `.cleaned` files
//!    (sluice-storage `cleaner.rs`), IO bounded by `limits::LOG_CLEANER_IO_MAX_BYTES_PER_SECOND`;
//! 3. under the lock: the swap.
//!
//! The produce-side rule of compacted topics (no keyless records) is [`check_keys`].

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use sluice_storage::cleaner::{AbortedRange, CleanOptions, CleanStats, RecordCodec};
use sluice_storage::ProducedBatch;
use tokio::sync::watch;

use crate::broker::{now_ms, Broker};
use crate::compression::{self, Codec, Levels};
use crate::error::KafkaError;
use crate::limits;
use crate::record_codec;
use crate::replica_manager::Replica;
use crate::topic_config::Compaction;

/// The broker's codecs, for the cleaner's reads and rewrites of compressed batches (rewritten
/// batches keep their codec, at its default level).
pub struct BrokerCodec;

impl RecordCodec for BrokerCodec {
    fn decompress(
        &self,
        codec: i16,
        body: &[u8],
        cap: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let codec = Codec::from_id(codec).ok_or_else(|| format!("unknown codec {codec}"))?;
        compression::decompress(codec, body, cap, out).map_err(|e| e.to_string())
    }
    fn compress(&self, codec: i16, section: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let codec = Codec::from_id(codec).ok_or_else(|| format!("unknown codec {codec}"))?;
        compression::compress(codec, Levels::DEFAULT, section, out)
    }
}

/// Kafka's check of records produced to a compacted topic (`LogValidator`): every record has
/// a key. The error names the first keyless record (its index in the request), with Kafka's
/// message; INVALID_RECORD.
pub fn check_keys(
    topic: &str,
    partition: i32,
    records: &[u8],
    batches: &[ProducedBatch],
    cap: usize,
) -> Result<(), (i32, KafkaError)> {
    let mut index = 0i32;
    let mut scratch = Vec::new();
    let invalid = |message: String| KafkaError::new(ResponseError::InvalidRecord, message);
    for b in batches {
        if b.header.is_control() {
            continue;
        }
        let batch = records.get(b.position..).unwrap_or_default();
        let section = record_codec::records_section(batch, &b.header, cap, &mut scratch)
            .map_err(|e| (index, invalid(format!("record batch of {topic}: {e}"))))?;
        for r in record_codec::records(section, b.header.records_count) {
            let r = r.map_err(|e| {
                (
                    index,
                    invalid(format!("record batch cannot be decoded: {e}")),
                )
            })?;
            if r.key.is_none() {
                return Err((
                    index,
                    invalid(format!(
                        "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
                    )),
                ));
            }
            index = index.saturating_add(1);
        }
    }
    Ok(())
}

/// The Produce partition response for a record refused by [`check_keys`]: INVALID_RECORD
/// with the message, and (Produce v8+) the record's index in `RecordErrors`, as Kafka.
pub fn refusal(
    partition: i32,
    version: i16,
    (index, e): (i32, KafkaError),
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    use kafka_protocol::messages::produce_response::{
        BatchIndexAndErrorMessage, PartitionProduceResponse,
    };
    let message = kafka_protocol::protocol::StrBytes::from_string(e.message);
    let resp = PartitionProduceResponse::default()
        .with_index(partition)
        .with_error_code(e.code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(Some(message.clone()));
    if version < 8 {
        return resp;
    }
    resp.with_record_errors(vec![BatchIndexAndErrorMessage::default()
        .with_batch_index(index)
        .with_batch_index_error_message(Some(message))])
}

/// The background task: cleans due logs, then waits `backoff`, until `stop`.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let backoff = broker.config.log_cleaner_backoff;
    loop {
        for _ in 0..limits::LOG_CLEANER_MAX_ROUNDS_IN_A_ROW {
            if *stop.borrow() {
                return;
            }
            let b = broker.clone();
            let cleaned = tokio::task::spawn_blocking(move || clean_filthiest(&b))
                .await
                .unwrap_or(false);
            if !cleaned {
                break;
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// A partition due for cleaning: its rank (overdue first, then dirtiest), topic, partition,
/// the topic's cleaner settings and decompression cap.
type Candidate = ((bool, f64), String, Arc<Replica>, Compaction, usize);

/// Cleans the log that needs it most, if any; true if a round changed something.
pub fn clean_filthiest(broker: &Broker) -> bool {
    let now = now_ms();
    let mut best: Option<Candidate> = None;
    for topic in broker.metadata.topics() {
        if !topic.configs.is_compacted() {
            continue;
        }
        let c = topic.configs.compaction();
        for p in broker.replicas.of_topic(topic.id, topic.partition_count) {
            let lso = p.last_stable_offset();
            let cl = p.with_log(|log| {
                log.cleanable(lso, now, c.min_compaction_lag_ms, c.max_compaction_lag_ms)
            });
            let ratio = cl.dirty_ratio();
            let due = (cl.dirty_bytes > 0 && (ratio > c.min_cleanable_dirty_ratio || cl.overdue))
                || cl.horizon_due;
            if !due {
                continue;
            }
            let rank = (cl.overdue || cl.horizon_due, ratio);
            if best.as_ref().is_none_or(|(r, ..)| rank > *r) {
                best = Some((
                    rank,
                    topic.name.clone(),
                    p,
                    c,
                    topic.configs.decompression_cap(),
                ));
            }
        }
    }
    let Some((_, topic, p, c, cap)) = best else {
        return false;
    };
    let started = std::time::Instant::now();
    match clean_partition(&p, c, cap, now) {
        Ok(Some(stats)) => {
            let m = &broker.metrics;
            m.cleaner_rounds.inc();
            m.cleaner_bytes_read.inc_by(stats.bytes_read);
            m.cleaner_bytes_written.inc_by(stats.bytes_written);
            m.cleaner_records_removed.inc_by(stats.records_removed);
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                topic = %topic,
                partition = p.index(),
                segments_before = stats.segments_before,
                segments_after = stats.segments_after,
                bytes_read = stats.bytes_read,
                bytes_written = stats.bytes_written,
                records_removed = stats.records_removed,
                keys = stats.map_keys,
                abandoned = stats.abandoned,
                mb_per_s = (stats.bytes_read as f64 / 1e6 / secs.max(1e-9)),
                "cleaned log"
            );
            !stats.abandoned
        }
        Ok(None) => false,
        Err(e) => {
            tracing::error!(topic = %topic, partition = p.index(), error = %e, "log cleaning failed");
            false
        }
    }
}

/// One round on one partition (see the module comment); `None` when there was nothing to do.
pub fn clean_partition(
    p: &Replica,
    c: Compaction,
    cap: usize,
    now: i64,
) -> Result<Option<CleanStats>, KafkaError> {
    let lso = p.last_stable_offset();
    let planned = p.with_log(|log| {
        let cl = log.cleanable(lso, now, c.min_compaction_lag_ms, c.max_compaction_lag_ms);
        log.plan_clean(&cl)
            .map(|plan| (plan, log.log_start_offset(), cl.first_uncleanable))
    });
    let Some((plan, start, end)) = planned else {
        return Ok(None);
    };
    let aborted = p
        .aborted_transactions(start, end)
        .into_iter()
        .map(|a| AbortedRange {
            producer_id: a.producer_id,
            first_offset: a.first_offset,
            last_offset: a.last_offset,
        })
        .collect();
    let opts = CleanOptions {
        now_ms: now,
        delete_retention_ms: c.delete_retention_ms,
        dedupe_buffer_bytes: limits::LOG_CLEANER_DEDUPE_BUFFER_SIZE,
        io_bytes_per_second: limits::LOG_CLEANER_IO_MAX_BYTES_PER_SECOND,
        io_buffer_bytes: limits::LOG_CLEANER_IO_BUFFER_SIZE,
        decompression_cap: cap,
        aborted,
    };
    let done = plan.execute(&opts, &BrokerCodec)?;
    let stats = p.with_log(|log| log.install_clean(done))?;
    Ok(Some(stats))
}

/// `--log-cleaner-backoff-ms` as a duration (at least 1 ms).
pub fn backoff(ms: u64) -> Duration {
    Duration::from_millis(ms.max(1))
}
