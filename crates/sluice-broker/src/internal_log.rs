//! Internal logs (cluster metadata, committed offsets, schemas): JSON events written as ordinary
//! record batches to a partition log of their own, replayed in order on start. They share the
//! storage engine, recovery and group commit with user data, so they will replicate the same way.
//!
//! Each log stays proportional to its live state: once enough has been appended since the last
//! snapshot, the owner appends its whole live state as records ([`append_snapshot`]) and the
//! segments before the snapshot are dropped ([`finish_snapshot`]). Replaying any suffix of the
//! log that starts at or before the newest snapshot gives the current state, because every
//! record is an upsert or a deletion of one key and the snapshot re-states every live key.
//!
//! `__consumer_offsets-0` and `_schemas-0` are replicated partitions of the metadata image,
//! written by their coordinators through `coordinator::CoordinatorLog` (appends as the leader,
//! snapshots dropped behind only once committed by the in-sync replicas); the registry's
//! followers read the committed records as they arrive ([`replay_range`]). The other internal
//! logs (`__share_group_state-0`, `__transaction_state-0`, and the pre-cluster
//! `__cluster_metadata-0` read once by the migration) are still `Partition`s their owners open
//! themselves; [`SnapshotLog`] is the seam both kinds share.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::KafkaError;
use crate::{limits, record_codec};

/// Bytes read at a time when replaying.
const REPLAY_CHUNK_BYTES: usize = 1 << 20;
/// Target size of one snapshot batch.
const SNAPSHOT_BATCH_BYTES: usize = 256 << 10;

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

/// How every internal log is stored: small segments, so a snapshot can drop what came before it
/// soon; no retention (internal state is removed by snapshots only); batches as large as a
/// request can carry.
pub fn log_config() -> sluice_storage::LogConfig {
    sluice_storage::LogConfig {
        segment_bytes: limits::INTERNAL_SEGMENT_BYTES,
        retention_ms: -1,
        retention_bytes: -1,
        max_message_bytes: limits::MAX_REQUEST_BYTES,
        ..Default::default()
    }
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

/// Calls `apply` with the offset, key and value of every record of the batch at `at` in
/// `bytes`; a batch that does not decode is skipped with an error.
fn apply_batch(
    bytes: &[u8],
    at: usize,
    header: &sluice_storage::BatchHeader,
    scratch: &mut Vec<u8>,
    mut apply: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>),
) {
    let decoded = bytes
        .get(at..)
        .ok_or_else(|| "batch outside its chunk".to_string())
        .and_then(|batch| {
            record_codec::records_section(batch, header, limits::MAX_REQUEST_BYTES, scratch)
                .map_err(|e| e.to_string())
        })
        .and_then(|section| {
            record_codec::check_records(section, header.records_count)?;
            for r in record_codec::records(section, header.records_count).flatten() {
                apply(
                    header.base_offset.saturating_add(r.offset_delta),
                    r.key,
                    r.value,
                );
            }
            Ok(())
        });
    if let Err(e) = decoded {
        tracing::error!(
            offset = header.base_offset,
            error = %e,
            "skipping an undecodable internal batch"
        );
    }
}

/// Calls `apply` with every record of the log, in order. The log is read a chunk at a time, so
/// replay needs memory for one chunk, not for the whole history; records are read in place
/// (`record_codec`). A batch that does not decode (it passed its CRC, so it was written that
/// way) is skipped with an error: no single record may keep the broker from starting.
pub fn replay(
    log: &Partition,
    mut apply: impl FnMut(Option<&[u8]>, Option<&[u8]>),
) -> Result<(), KafkaError> {
    let mut offset = log.watermarks().log_start_offset;
    let mut scratch = Vec::new();
    loop {
        let (slice, marks) = log.read(offset, REPLAY_CHUNK_BYTES);
        let Some(slice) = slice? else { break };
        let bytes = slice.load()?;
        let mut next = None;
        for (at, header) in sluice_storage::BatchIter::new(&bytes) {
            next = Some(header.next_offset());
            apply_batch(&bytes, at, &header, &mut scratch, |_, k, v| apply(k, v));
        }
        // Only forward: a header that does not move the offset ends the replay.
        match next {
            Some(n) if n > offset && n < marks.high_watermark => offset = n,
            _ => break,
        }
    }
    Ok(())
}

/// Calls `apply` with the leader epoch, key and value of every record at offsets
/// `[from, until)`, in order, reading whole batches only: a batch that ends past `until` (not
/// committed yet) is left for a later call. Returns the offset after the last batch read (at
/// least `from`) and the leader epoch of that batch (`None` when nothing was read). An
/// undecodable batch is skipped with an error, as in [`replay`].
pub fn replay_range(
    log: &Partition,
    from: i64,
    until: i64,
    mut apply: impl FnMut(i32, Option<&[u8]>, Option<&[u8]>),
) -> Result<(i64, Option<i32>), KafkaError> {
    let mut next = from;
    let mut last_epoch = None;
    let mut scratch = Vec::new();
    'chunks: while next < until {
        let (slice, _) = log.read(next, REPLAY_CHUNK_BYTES);
        let Some(slice) = slice? else { break };
        let bytes = slice.load()?;
        let before = next;
        for (at, header) in sluice_storage::BatchIter::new(&bytes) {
            let end = header.next_offset();
            if end > until {
                break 'chunks;
            }
            if end <= next {
                continue;
            }
            let skip_below = next;
            apply_batch(&bytes, at, &header, &mut scratch, |offset, k, v| {
                if offset >= skip_below {
                    apply(header.partition_leader_epoch, k, v);
                }
            });
            next = end;
            last_epoch = Some(header.partition_leader_epoch);
        }
        if next == before {
            break;
        }
    }
    Ok((next, last_epoch))
}

/// When an internal log is rewritten as a snapshot of its live state: once the bytes appended
/// since the last snapshot reach the larger of [`limits::INTERNAL_COMPACT_MIN_BYTES`] and the
/// last snapshot's size. The log on disk therefore stays within a small multiple of the live
/// state (plus one segment), however long the history.
pub struct Compaction {
    min_bytes: AtomicU64,
    since_snapshot: AtomicU64,
    snapshot_bytes: AtomicU64,
    running: AtomicBool,
}

impl Compaction {
    /// `log_bytes`: the log's size at open (all of it counts as written since a snapshot).
    pub fn new(log_bytes: u64) -> Self {
        Compaction {
            min_bytes: AtomicU64::new(limits::INTERNAL_COMPACT_MIN_BYTES),
            since_snapshot: AtomicU64::new(log_bytes),
            snapshot_bytes: AtomicU64::new(0),
            running: AtomicBool::new(false),
        }
    }

    pub fn appended(&self, bytes: usize) {
        self.since_snapshot
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn due(&self) -> bool {
        let threshold = self
            .snapshot_bytes
            .load(Ordering::Relaxed)
            .max(self.min_bytes.load(Ordering::Relaxed));
        self.since_snapshot.load(Ordering::Relaxed) >= threshold
            && !self.running.load(Ordering::Relaxed)
    }

    /// Lowers the threshold, so tests reach a snapshot with little data.
    #[cfg(test)]
    pub fn set_min_bytes(&self, bytes: u64) {
        self.min_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Claims the right to write the next snapshot (one at a time); false if one is running.
    pub fn start(&self) -> bool {
        !self.running.swap(true, Ordering::AcqRel)
    }

    fn finish(&self, snapshot_bytes: Option<u64>) {
        if let Some(b) = snapshot_bytes {
            self.snapshot_bytes.store(b, Ordering::Relaxed);
            self.since_snapshot.store(0, Ordering::Relaxed);
        }
        self.running.store(false, Ordering::Release);
    }
}

/// What snapshots need from an internal log: a local `Partition` (fsync = committed), or a
/// coordinator's replicated partition (`coordinator::CoordinatorLog`: committed = below the
/// high watermark, so the history is dropped only once every in-sync replica has the
/// snapshot).
pub trait SnapshotLog {
    /// The offset the next append gets.
    fn next_offset(&self) -> i64;
    /// Appends one batch; returns the offset after it.
    fn append_batch(&self, buf: &[u8], now_ms: i64) -> Result<i64, KafkaError>;
    /// Waits until everything below `end` is committed.
    fn commit_to(&self, end: i64) -> impl std::future::Future<Output = Result<(), KafkaError>>;
    /// Drops the segments wholly before `start`.
    fn drop_before(&self, start: i64) -> Result<(), KafkaError>;
    fn log_bytes(&self) -> u64;
}

impl SnapshotLog for Partition {
    fn next_offset(&self) -> i64 {
        self.watermarks().log_end_offset
    }

    fn append_batch(&self, buf: &[u8], now_ms: i64) -> Result<i64, KafkaError> {
        Ok(self.append(buf, now_ms)?.last_offset + 1)
    }

    async fn commit_to(&self, end: i64) -> Result<(), KafkaError> {
        self.make_durable(end).await
    }

    fn drop_before(&self, start: i64) -> Result<(), KafkaError> {
        self.delete_records_before(start).map(|_| ())
    }

    fn log_bytes(&self) -> u64 {
        self.size_bytes()
    }
}

/// Appends `records` (the live state, as records that rebuild it from nothing when replayed
/// over any suffix of the log that starts at or before them) in batches of bounded size.
/// Returns the offset the snapshot starts at and the offset after it. The caller holds
/// whatever lock orders its writes, so no change lands between the state it read and this
/// append.
pub fn append_snapshot<L: SnapshotLog>(
    log: &L,
    records: &[KeyValue],
    now_ms: i64,
) -> Result<(i64, i64, u64), KafkaError> {
    let start = log.next_offset();
    let mut end = start;
    let mut bytes = 0u64;
    let mut batch_start = 0;
    let mut batch_bytes = 0usize;
    for (i, (k, v)) in records.iter().enumerate() {
        batch_bytes += k.as_ref().map_or(0, Vec::len) + v.as_ref().map_or(0, Vec::len) + 32;
        let last = i + 1 == records.len();
        if batch_bytes >= SNAPSHOT_BATCH_BYTES || last {
            let buf = encode_batch(&records[batch_start..=i], now_ms)?;
            bytes += buf.len() as u64;
            end = log.append_batch(&buf, now_ms)?;
            batch_start = i + 1;
            batch_bytes = 0;
        }
    }
    Ok((start, end, bytes))
}

/// Waits for a snapshot appended by [`append_snapshot`] (passed with its result) to be
/// durable, then drops the segments wholly before it. Always ends the compaction claimed with
/// [`Compaction::start`]; a failure is logged (the log keeps its history and replays the same).
pub async fn finish_snapshot<L: SnapshotLog>(
    log: &L,
    compaction: &Compaction,
    appended: Result<(i64, i64, u64), KafkaError>,
) -> Result<(), KafkaError> {
    let result = async {
        let (start, end, bytes) = appended?;
        log.commit_to(end).await?;
        log.drop_before(start)?;
        Ok::<_, KafkaError>((start, bytes))
    }
    .await;
    match result {
        Ok((start, bytes)) => {
            compaction.finish(Some(bytes));
            tracing::info!(
                start,
                snapshot_bytes = bytes,
                log_bytes = log.log_bytes(),
                "internal log compacted"
            );
            Ok(())
        }
        Err(e) => {
            compaction.finish(None);
            tracing::error!(error = %e, "internal log compaction failed");
            Err(e)
        }
    }
}
