//! One partition: its log behind a lock, its idempotent-producer state, and the group commit
//! that makes appends durable under the flush policy.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use sluice_storage::{BatchHeader, Log, LogConfig, RetentionOutcome, SegmentSlice};

use crate::error::KafkaError;
use crate::producer_state::{ProducerStateTable, SequenceCheck};

/// The leader epoch of every partition on a single node; replication will bump it.
pub const LEADER_EPOCH: i32 = 0;

struct State {
    log: Log,
    producers: ProducerStateTable,
}

pub struct Partition {
    pub index: i32,
    state: Mutex<State>,
    /// Everything below this offset is on disk (fsynced).
    synced_offset: AtomicI64,
    /// One fsync at a time; producers that wait on it are covered by the next one.
    sync_lock: tokio::sync::Mutex<()>,
    dirty: AtomicBool,
}

/// What a produce to this partition got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// True when the batch was a retry of one already stored.
    pub duplicate: bool,
}

/// A transaction marker (Kafka's `EndTransactionMarker`) the coordinator writes to every
/// partition of a transaction: a control batch of the producer's id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// COMMIT (true) or ABORT (false).
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// One aborted transaction as Fetch returns it (`AbortedTransactions`) and the cleaner uses it:
/// the producer and the offsets its aborted data spans on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of the ABORT marker.
    pub last_offset: i64,
}

/// Offsets that bound what can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub log_start_offset: i64,
    /// On a single node the high watermark is the log end offset.
    pub high_watermark: i64,
}

impl Partition {
    pub fn open(
        dir: &Path,
        index: i32,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, KafkaError> {
        let mut producers = ProducerStateTable::default();
        let log = Log::open(dir, config, now_ms, &mut |h: &BatchHeader| {
            producers.record(h)
        })?;
        let end = log.log_end_offset();
        Ok(Partition {
            index,
            state: Mutex::new(State { log, producers }),
            synced_offset: AtomicI64::new(end),
            sync_lock: tokio::sync::Mutex::new(()),
            dirty: AtomicBool::new(false),
        })
    }

    /// Validates and appends a producer's record set, written from the request's own buffer.
    pub fn append(&self, buf: &[u8], now_ms: i64) -> Result<Appended, KafkaError> {
        let mut state = self.state.lock();
        let batches = state.log.validate(buf, now_ms)?;
        // Idempotence: Kafka sends one batch per partition; check each against producer state.
        for b in &batches {
            if !b.header.has_producer_id() {
                continue;
            }
            match state.producers.check(&b.header) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate {
                    first_offset,
                    last_offset,
                } => {
                    if batches.len() == 1 {
                        return Ok(Appended {
                            base_offset: first_offset,
                            last_offset,
                            log_append_time_ms: -1,
                            log_start_offset: state.log.log_start_offset(),
                            duplicate: true,
                        });
                    }
                    return Err(KafkaError::new(
                        ResponseError::DuplicateSequenceNumber,
                        "duplicate batch inside a multi-batch record set",
                    ));
                }
                SequenceCheck::OutOfOrder { expected, got } => {
                    return Err(KafkaError::new(
                        ResponseError::OutOfOrderSequenceNumber,
                        format!(
                            "producer {} sent sequence {got}, expected {expected}",
                            b.header.producer_id
                        ),
                    ));
                }
                SequenceCheck::StaleEpoch { current, got } => {
                    return Err(KafkaError::new(
                        ResponseError::InvalidProducerEpoch,
                        format!(
                            "producer {} epoch {got} is older than the current epoch {current}",
                            b.header.producer_id
                        ),
                    ));
                }
            }
        }
        let info = state.log.append(buf, &batches, LEADER_EPOCH, now_ms)?;
        let mut next = info.first_offset;
        for b in &batches {
            let mut h = b.header;
            h.base_offset = next;
            next = h.next_offset();
            state.producers.record(&h);
        }
        self.dirty.store(true, Ordering::Release);
        Ok(Appended {
            base_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset: state.log.log_start_offset(),
            duplicate: false,
        })
    }

    /// Waits until every offset below `end_offset` is fsynced. Concurrent callers share fsyncs:
    /// whoever waits while one runs is covered by the next (group commit).
    pub async fn make_durable(&self, end_offset: i64) -> Result<(), KafkaError> {
        if self.synced_offset.load(Ordering::Acquire) >= end_offset {
            return Ok(());
        }
        let _turn = self.sync_lock.lock().await;
        if self.synced_offset.load(Ordering::Acquire) >= end_offset {
            return Ok(());
        }
        self.sync_now().await
    }

    /// One fsync of everything appended so far.
    pub async fn sync_now(&self) -> Result<(), KafkaError> {
        self.dirty.store(false, Ordering::Release);
        let (file, target) = self.state.lock().log.sync_target();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| KafkaError::new(ResponseError::KafkaStorageError, e.to_string()))??;
        self.synced_offset.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// True if appends happened since the last sync (interval flush policy).
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    pub fn watermarks(&self) -> Watermarks {
        let state = self.state.lock();
        Watermarks {
            log_start_offset: state.log.log_start_offset(),
            high_watermark: state.log.log_end_offset(),
        }
    }

    /// Locates the bytes for a fetch; the caller loads them outside the lock.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> (Result<Option<SegmentSlice>, KafkaError>, Watermarks) {
        let state = self.state.lock();
        let marks = Watermarks {
            log_start_offset: state.log.log_start_offset(),
            high_watermark: state.log.log_end_offset(),
        };
        (state.log.read(offset, max_bytes).map_err(Into::into), marks)
    }

    /// Appends a transaction marker (a control batch) for the producer's open transaction on
    /// this partition, and closes it: the last stable offset moves past it, and an ABORT is
    /// entered in the aborted-transaction index. Retried markers are appended again harmlessly
    /// (Kafka does the same); a marker whose coordinator epoch is older than the last one seen
    /// is refused with TRANSACTION_COORDINATOR_FENCED.
    pub fn append_marker(&self, marker: TxnMarker, now_ms: i64) -> Result<Appended, KafkaError> {
        // SKELETON: implemented by the partition-transactions work.
        let _ = (marker, now_ms);
        Err(KafkaError::new(
            ResponseError::UnsupportedVersion,
            "transaction markers are not implemented yet",
        ))
    }

    /// The last stable offset: the first offset of the oldest open transaction, or the high
    /// watermark when none is open. read_committed readers never read at or past it.
    pub fn last_stable_offset(&self) -> i64 {
        // SKELETON: implemented by the partition-transactions work.
        self.watermarks().high_watermark
    }

    /// The aborted transactions whose data overlaps `[from, to)`, ordered by first offset
    /// (what Fetch with isolation_level=1 returns, and what the cleaner drops).
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        // SKELETON: implemented by the partition-transactions work.
        let _ = (from, to);
        Vec::new()
    }

    pub fn find_by_timestamp(&self, ts: i64) -> Result<Option<SegmentSlice>, KafkaError> {
        Ok(self.state.lock().log.find_by_timestamp(ts)?)
    }

    pub fn max_timestamp_batch(&self) -> Result<Option<(i64, SegmentSlice)>, KafkaError> {
        Ok(self.state.lock().log.max_timestamp_batch()?)
    }

    pub fn delete_records_before(&self, offset: i64) -> Result<i64, KafkaError> {
        Ok(self.state.lock().log.delete_records_before(offset)?)
    }

    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, KafkaError> {
        Ok(self.state.lock().log.apply_retention(now_ms)?)
    }

    pub fn set_config(&self, config: LogConfig) -> Result<(), KafkaError> {
        Ok(self.state.lock().log.set_config(config)?)
    }

    /// Runs `f` on the log under the partition lock: the log cleaner (`cleaner.rs`) plans and
    /// installs its rounds this way, and does the long work in between without the lock.
    pub fn with_log<R>(&self, f: impl FnOnce(&mut Log) -> R) -> R {
        f(&mut self.state.lock().log)
    }

    pub fn size_bytes(&self) -> u64 {
        self.state.lock().log.size_bytes()
    }

    /// Removes the partition's files (topic deletion), durably: the data directory is fsynced
    /// after the removal. Readers holding a segment keep reading the unlinked file until they
    /// finish.
    pub fn delete_files(&self) -> Result<(), KafkaError> {
        let state = self.state.lock();
        Ok(sluice_storage::log::remove_log_dir(state.log.dir())?)
    }
}
