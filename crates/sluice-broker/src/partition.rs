//! One partition: its log behind a lock, its producer state (idempotence and transactions),
//! and the group commit that makes appends durable under the flush policy.
//!
//! Transactions on the partition (Kafka's `UnifiedLog` + `ProducerStateManager`): a
//! transactional batch opens its producer's transaction at its offset, a marker
//! ([`Partition::append_marker`]) closes it; the last stable offset is the first offset of the
//! oldest open transaction (else the high watermark); an ABORT enters the segment's
//! aborted-transaction index. Producer state is snapshotted (`<offset>.snapshot`) at each
//! segment roll and at clean shutdown, and on open the newest usable snapshot is loaded and the
//! log after it replayed (rebuilding the transaction index entries of what is replayed).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use sluice_storage::records::build_control_batch;
use sluice_storage::{
    producer_snapshot, AbortedTxnEntry, BatchHeader, ControlRecord, Log, LogConfig,
    RetentionOutcome, SegmentSlice,
};

use crate::error::KafkaError;
use crate::limits::{PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS, PRODUCER_ID_EXPIRATION_MS};
use crate::producer_state::{
    CompletedTxn, MarkerCheck, ProducerStateTable, ProducerView, SequenceCheck,
};
use crate::replica_manager::{Role, INITIAL_LEADER_EPOCH};

struct State {
    log: Log,
    /// This node's role for the partition (replica_manager.rs); its epoch is stamped into
    /// every batch appended. Internal logs are always `Leader` at the initial epoch.
    role: Role,
    /// The high watermark the ReplicaManager set under replication; `None` (single node,
    /// internal logs): the log end, every append being committed at once.
    high_watermark: Option<i64>,
    producers: ProducerStateTable,
    /// When producer expiry last ran (`producer.id.expiration.check.interval.ms`).
    last_expiry_check_ms: i64,
    /// Conditional append (conditional.rs): the key index, on topics that turn it on.
    conditional: Option<crate::conditional::KeyIndex>,
    /// Follower appends and truncations do not maintain the key index; the next leader
    /// append rebuilds it from the log.
    conditional_stale: bool,
}

impl State {
    /// Writes a producer-state snapshot at `offset` (the log end, or the base of a segment
    /// just rolled, before anything past it is recorded). A failure is logged: the next open
    /// replays from an older snapshot.
    fn snapshot_at(&self, offset: i64) {
        if let Err(e) = producer_snapshot::write(self.log.dir(), offset, &self.producers.encode()) {
            tracing::warn!(dir = %self.log.dir().display(), offset, error = %e, "could not write a producer-state snapshot");
        }
    }

    /// Enters a completed transaction in the index if it was aborted.
    fn index_completed(&mut self, done: Option<CompletedTxn>) -> Result<(), KafkaError> {
        if let Some(d) = done.filter(|d| d.aborted) {
            self.log.add_aborted_txn(AbortedTxnEntry {
                producer_id: d.producer_id,
                first_offset: d.first_offset,
                last_offset: d.last_offset,
                last_stable_offset: d.last_stable_offset,
            })?;
        }
        Ok(())
    }
}

pub struct Partition {
    pub index: i32,
    state: Mutex<State>,
    /// Everything below this offset is on disk (fsynced).
    synced_offset: AtomicI64,
    /// One fsync at a time; producers that wait on it are covered by the next one.
    sync_lock: tokio::sync::Mutex<()>,
    dirty: AtomicBool,
    /// A copy of `State::role` for readers that only display it (Metadata, KIP-951 hints,
    /// `ReplicaManager::leader_of`): written under the state lock whenever the role changes,
    /// read without any lock, leader id and epoch packed in one word so a reader never sees
    /// one role's epoch with another's leader ([`Role::pack`]).
    role_view: AtomicU64,
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
    /// The high watermark: the log end on a single node (and on internal logs); under
    /// replication what the ReplicaManager set (`Partition::set_high_watermark`), never past
    /// the log end nor below the log start.
    pub high_watermark: i64,
    /// The first offset of the oldest open transaction, else the high watermark.
    pub last_stable_offset: i64,
    /// The log end offset (the next offset to be appended).
    pub log_end_offset: i64,
}

impl Partition {
    pub fn open(
        dir: &Path,
        index: i32,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, KafkaError> {
        let mut log = Log::open(dir, config, now_ms, &mut |_: &BatchHeader| {})?;
        let producers = load_producer_state(&mut log)?;
        let end = log.log_end_offset();
        let role = Role::Leader {
            leader_epoch: INITIAL_LEADER_EPOCH,
        };
        Ok(Partition {
            index,
            role_view: AtomicU64::new(role.pack()),
            state: Mutex::new(State {
                log,
                role,
                high_watermark: None,
                producers,
                last_expiry_check_ms: now_ms,
                conditional: None,
                conditional_stale: false,
            }),
            synced_offset: AtomicI64::new(end),
            sync_lock: tokio::sync::Mutex::new(()),
            dirty: AtomicBool::new(false),
        })
    }

    /// Validates and appends a producer's record set, written from the request's own buffer.
    /// A transactional batch that would open a transaction is refused here: it must come
    /// through [`Partition::append_verified`].
    pub fn append(&self, buf: &[u8], now_ms: i64) -> Result<Appended, KafkaError> {
        self.append_verified(buf, now_ms, None)
    }

    /// KIP-890 part 1: whether a transactional batch of this producer needs the coordinator's
    /// verification (its transaction is not open here yet). If so, returns the guard to pass
    /// to [`Partition::append_verified`] once verified; a marker written meanwhile voids it,
    /// so a late batch cannot reopen a transaction that just ended.
    pub fn start_txn_verification(&self, producer_id: i64, producer_epoch: i16) -> Option<u64> {
        let mut state = self.state.lock();
        if state.producers.has_open_txn(producer_id, producer_epoch) {
            return None;
        }
        Some(state.producers.start_verification(producer_id))
    }

    /// [`Partition::append`] for a record set whose transactional batches were verified with
    /// `guard` (from [`Partition::start_txn_verification`]).
    pub fn append_verified(
        &self,
        buf: &[u8],
        now_ms: i64,
        guard: Option<u64>,
    ) -> Result<Appended, KafkaError> {
        self.append_gated(buf, now_ms, guard, |role| Ok(role.leader_epoch()))
    }

    /// [`Partition::append_verified`] after `gate` accepted the role (under the partition
    /// lock, so the role cannot change before the append): it returns the leader epoch to
    /// stamp into the batches, or the error to answer.
    pub fn append_gated(
        &self,
        buf: &[u8],
        now_ms: i64,
        guard: Option<u64>,
        gate: impl FnOnce(&Role) -> Result<i32, KafkaError>,
    ) -> Result<Appended, KafkaError> {
        let mut state = self.state.lock();
        let leader_epoch = gate(&state.role)?;
        let batches = state.log.validate(buf, now_ms)?;
        // Idempotence: Kafka sends one batch per partition; check each against producer state.
        for b in &batches {
            let h = &b.header;
            if h.is_control() {
                return Err(KafkaError::new(
                    ResponseError::InvalidRecord,
                    "control batches are written by the transaction coordinator, not by clients",
                ));
            }
            if !h.has_producer_id() {
                if h.is_transactional() {
                    return Err(KafkaError::new(
                        ResponseError::InvalidRecord,
                        "a transactional batch must carry a producer id",
                    ));
                }
                continue;
            }
            match state.producers.check(h) {
                SequenceCheck::Append => {
                    if h.is_transactional()
                        && !state
                            .producers
                            .has_open_txn(h.producer_id, h.producer_epoch)
                        && !guard.is_some_and(|g| state.producers.guard_holds(h.producer_id, g))
                    {
                        return Err(KafkaError::new(
                            ResponseError::InvalidTxnState,
                            format!(
                                "producer {}: the batch is not part of a verified ongoing transaction",
                                h.producer_id
                            ),
                        ));
                    }
                }
                SequenceCheck::NonTransactionalInTxn { txn_first_offset } => {
                    return Err(KafkaError::new(
                        ResponseError::InvalidTxnState,
                        format!(
                            "producer {} sent a non-transactional batch while its transaction (from offset {txn_first_offset}) is open",
                            h.producer_id
                        ),
                    ));
                }
                SequenceCheck::TooManyProducers => {
                    return Err(KafkaError::new(
                        ResponseError::NotEnoughReplicas,
                        "every producer tracked on this partition has an open transaction; retry later",
                    ));
                }
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
        let active_base = state.log.active_base_offset();
        // ---- conditional append (conditional.rs): checked and indexed atomically with the
        // append, after the duplicate check.
        let state = &mut *state;
        if state.conditional_stale {
            state.conditional_stale = false;
            if state.conditional.is_some() {
                state.conditional = Some(crate::conditional::KeyIndex::build(&state.log));
            }
        }
        let predicted = match state.conditional.as_mut() {
            Some(c) => Some(c.check_and_apply(&state.log, buf, &batches)?),
            None => None,
        };
        let info = state.log.append(buf, &batches, leader_epoch, now_ms);
        if let (Some(c), Some(p)) = (state.conditional.as_mut(), predicted) {
            c.appended(p, info.as_ref().ok().map(|i| i.first_offset));
        }
        let info = info?;
        // ---- end conditional append
        if state.log.active_base_offset() != active_base {
            // Rolled: snapshot the state as of the new segment's base, before this append.
            let base = state.log.active_base_offset();
            state.snapshot_at(base);
        }
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
        tokio::task::spawn_blocking(move || crate::metrics::timed_fsync(|| file.sync_data()))
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
        self.state.lock().marks()
    }

    /// Locates the bytes for a fetch; the caller loads them outside the lock.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> (Result<Option<SegmentSlice>, KafkaError>, Watermarks) {
        let state = self.state.lock();
        let marks = state.marks();
        (state.log.read(offset, max_bytes).map_err(Into::into), marks)
    }

    /// [`Partition::read`] after `gate` accepted the role, under the same lock.
    #[allow(clippy::type_complexity)]
    pub fn read_gated(
        &self,
        offset: i64,
        max_bytes: usize,
        gate: impl FnOnce(&Role) -> Result<(), KafkaError>,
    ) -> Result<(Result<Option<SegmentSlice>, KafkaError>, Watermarks), KafkaError> {
        let state = self.state.lock();
        gate(&state.role)?;
        let marks = state.marks();
        Ok((state.log.read(offset, max_bytes).map_err(Into::into), marks))
    }

    /// Sets the high watermark (`None`: the log end). Readers see it clamped into
    /// `[log start, log end]`.
    pub fn set_high_watermark(&self, high_watermark: Option<i64>) {
        self.state.lock().high_watermark = high_watermark;
    }

    /// The high watermark the replication layer set (`None`: the log end).
    pub fn high_watermark_set(&self) -> Option<i64> {
        self.state.lock().high_watermark
    }

    /// This node's role for the partition, without taking the partition lock (a snapshot:
    /// the leader-only operations check the role again under the lock).
    pub fn role(&self) -> Role {
        Role::unpack(self.role_view.load(Ordering::Acquire))
    }

    /// Sets the role (a replica being opened).
    pub fn set_role(&self, role: Role) {
        let mut state = self.state.lock();
        state.role = role;
        self.role_view.store(role.pack(), Ordering::Release);
    }

    /// Changes the role to `new` if `decide` (given the current role, under the lock)
    /// answers `Ok(true)`; returns its answer.
    pub fn update_role(
        &self,
        decide: impl FnOnce(&Role) -> Result<bool, KafkaError>,
        new: Role,
    ) -> Result<bool, KafkaError> {
        let mut state = self.state.lock();
        let change = decide(&state.role)?;
        if change {
            state.role = new;
            self.role_view.store(new.pack(), Ordering::Release);
        }
        Ok(change)
    }

    /// Appends a transaction marker (a control batch) for the producer's open transaction on
    /// this partition, and closes it: the last stable offset moves past it, and an ABORT is
    /// entered in the aborted-transaction index. Retried markers are appended again harmlessly
    /// (Kafka does the same); a marker whose coordinator epoch is older than the last one seen
    /// is refused with TRANSACTION_COORDINATOR_FENCED, one with an older producer epoch with
    /// INVALID_PRODUCER_EPOCH. A marker for a producer with no open transaction here is
    /// appended and changes neither the LSO nor the index.
    ///
    /// The caller (the coordinator's marker writer, or WriteTxnMarkers) must then
    /// (1) wake long-polling fetches with `broker.data_appended.notify_waiters()` — the LSO
    /// moved, so read_committed fetches may now have data — and (2) under `flush=always`,
    /// `make_durable(appended.last_offset + 1)` before counting the marker as written.
    pub fn append_marker(&self, marker: TxnMarker, now_ms: i64) -> Result<Appended, KafkaError> {
        self.append_marker_gated(marker, now_ms, |role| Ok(role.leader_epoch()))
    }

    /// [`Partition::append_marker`] after `gate` accepted the role (see
    /// [`Partition::append_gated`]).
    pub fn append_marker_gated(
        &self,
        marker: TxnMarker,
        now_ms: i64,
        gate: impl FnOnce(&Role) -> Result<i32, KafkaError>,
    ) -> Result<Appended, KafkaError> {
        let mut state = self.state.lock();
        let leader_epoch = gate(&state.role)?;
        match state.producers.check_marker(
            marker.producer_id,
            marker.producer_epoch,
            marker.coordinator_epoch,
        ) {
            MarkerCheck::Ok => {}
            MarkerCheck::StaleEpoch { current, got } => {
                return Err(KafkaError::new(
                    ResponseError::InvalidProducerEpoch,
                    format!(
                        "marker for producer {} has epoch {got}, older than the current epoch {current}",
                        marker.producer_id
                    ),
                ))
            }
            MarkerCheck::CoordinatorFenced { current, got } => {
                return Err(KafkaError::new(
                    ResponseError::TransactionCoordinatorFenced,
                    format!(
                        "marker for producer {} has coordinator epoch {got}, older than {current}",
                        marker.producer_id
                    ),
                ))
            }
        }
        let control = ControlRecord {
            kind: if marker.commit {
                ControlRecord::COMMIT
            } else {
                ControlRecord::ABORT
            },
            coordinator_epoch: marker.coordinator_epoch,
        };
        let buf = build_control_batch(marker.producer_id, marker.producer_epoch, control, now_ms);
        let batches = state.log.validate(&buf, now_ms)?;
        let Some(first) = batches.first() else {
            return Err(KafkaError::new(
                ResponseError::UnknownServerError,
                "the marker batch did not validate",
            ));
        };
        let mut header = first.header;
        let active_base = state.log.active_base_offset();
        let info = state.log.append(&buf, &batches, leader_epoch, now_ms)?;
        if state.log.active_base_offset() != active_base {
            let base = state.log.active_base_offset();
            state.snapshot_at(base);
        }
        header.base_offset = info.first_offset;
        let done = state.producers.record_marker(&header, control);
        self.dirty.store(true, Ordering::Release);
        state.index_completed(done)?;
        Ok(Appended {
            base_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset: state.log.log_start_offset(),
            duplicate: false,
        })
    }

    /// The last stable offset: the first offset of the oldest open transaction, or the high
    /// watermark when none is open. read_committed readers never read at or past it.
    pub fn last_stable_offset(&self) -> i64 {
        self.state.lock().marks().last_stable_offset
    }

    /// The aborted transactions whose data overlaps `[from, to)`, ordered by first offset
    /// (what Fetch with isolation_level=1 returns, and what the cleaner drops). Kafka's lookup:
    /// the transaction indexes from the segment holding `from` on, until an entry's last
    /// stable offset reaches `to`.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let entries = self.state.lock().log.aborted_txns(from, to);
        let mut out: Vec<AbortedTxn> = entries
            .into_iter()
            .map(|e| AbortedTxn {
                producer_id: e.producer_id,
                first_offset: e.first_offset,
                last_offset: e.last_offset,
            })
            .collect();
        out.sort_by_key(|a| (a.first_offset, a.last_offset));
        out
    }

    /// The producers tracked here (DescribeProducers).
    pub fn describe_producers(&self) -> Vec<ProducerView> {
        self.state.lock().producers.describe()
    }

    /// Writes a producer-state snapshot at the log end (graceful shutdown, before the logs are
    /// fsynced), so the next start replays nothing.
    pub fn snapshot_producer_state(&self) {
        let state = self.state.lock();
        let end = state.log.log_end_offset();
        let dir = state.log.dir();
        if producer_snapshot::list(dir).is_ok_and(|l| l.last() == Some(&end)) {
            return;
        }
        state.snapshot_at(end);
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

    /// DeleteRecords after `gate` accepted the role, under the same lock; `-1` deletes up
    /// to the high watermark (as Kafka).
    pub fn delete_records_before_gated(
        &self,
        offset: i64,
        gate: impl FnOnce(&Role) -> Result<i32, KafkaError>,
    ) -> Result<i64, KafkaError> {
        let mut state = self.state.lock();
        gate(&state.role)?;
        let marks = state.marks();
        let target = if offset == -1 {
            marks.high_watermark
        } else {
            offset
        };
        // As Kafka: nothing at or past the high watermark (the log refuses past its end).
        if target > marks.high_watermark {
            return Err(KafkaError::new(
                ResponseError::OffsetOutOfRange,
                format!(
                    "cannot delete records before {target}: the high watermark is {}",
                    marks.high_watermark
                ),
            ));
        }
        Ok(state.log.delete_records_before(target)?)
    }

    /// Retention and `segment.ms` rolling (a roll writes a producer-state snapshot; only
    /// segments that end at or below the high watermark are deleted), and
    /// producer-id expiry every `producer.id.expiration.check.interval.ms`.
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, KafkaError> {
        let mut state = self.state.lock();
        if now_ms.saturating_sub(state.last_expiry_check_ms)
            >= PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS
        {
            state.last_expiry_check_ms = now_ms;
            state.producers.expire(now_ms, PRODUCER_ID_EXPIRATION_MS);
        }
        let active_base = state.log.active_base_offset();
        // Never at or above the high watermark (a replicated leader's followers, or a
        // follower's leader, may not have it yet); a single node's HW is its log end.
        let high_watermark = state.marks().high_watermark;
        let outcome = state.log.apply_retention(now_ms, high_watermark)?;
        if state.log.active_base_offset() != active_base {
            let base = state.log.active_base_offset();
            state.snapshot_at(base);
        }
        Ok(outcome)
    }

    /// Turns conditional append on (building the key index from the log, under the lock) or
    /// off (dropping it); nothing happens if it is already in that state.
    pub fn set_conditional_append(&self, enabled: bool) {
        let mut state = self.state.lock();
        match (enabled, state.conditional.is_some()) {
            (true, false) => {
                let index = crate::conditional::KeyIndex::build(&state.log);
                state.conditional = Some(index);
            }
            (false, true) => state.conditional = None,
            _ => {}
        }
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

/// Replication (issue #10): the follower's side of the partition (`replication/fetcher.rs`)
/// and the leader's epoch bookkeeping.
impl Partition {
    /// Appends a leader's batches as they are (offsets, epochs, CRCs kept;
    /// `Log::append_as_follower`) and brings producer state along from their headers, as
    /// recovery's replay does: sequences and epochs (so this replica, once leader, dedupes a
    /// retried idempotent batch), open transactions (first offsets, so the LSO is right) and
    /// markers (the aborted-transaction index gets each ABORT). A roll snapshots producer
    /// state at the new segment's base, as a leader's append does. The conditional-append key
    /// index cannot follow a follower's appends cheaply: it is marked stale and rebuilt from
    /// the log at the next leader append.
    pub fn append_as_follower(
        &self,
        buf: &[u8],
        now_ms: i64,
    ) -> Result<sluice_storage::FollowerAppend, KafkaError> {
        let mut state = self.state.lock();
        Self::follower_only(&state)?;
        let active_base = state.log.active_base_offset();
        let appended = state.log.append_as_follower(buf, now_ms)?;
        if state.log.active_base_offset() != active_base {
            // The snapshot must describe the state at the new segment's base: replay the
            // batches before it first.
            let base = state.log.active_base_offset();
            let mut completed = Vec::new();
            for b in appended
                .batches
                .iter()
                .filter(|b| b.header.base_offset < base)
            {
                completed.extend(state.producers.replay(&b.header, b.control));
            }
            for d in completed {
                state.index_completed(Some(d))?;
            }
            state.snapshot_at(base);
            let mut completed = Vec::new();
            for b in appended
                .batches
                .iter()
                .filter(|b| b.header.base_offset >= base)
            {
                completed.extend(state.producers.replay(&b.header, b.control));
            }
            for d in completed {
                state.index_completed(Some(d))?;
            }
        } else {
            let mut completed = Vec::new();
            for b in &appended.batches {
                completed.extend(state.producers.replay(&b.header, b.control));
            }
            for d in completed {
                state.index_completed(Some(d))?;
            }
        }
        if state.conditional.is_some() {
            state.conditional_stale = true;
        }
        self.dirty.store(true, Ordering::Release);
        Ok(appended)
    }

    /// Kafka's `Partition.truncateTo` on a follower: cuts the log (`Log::truncate_to`), then
    /// rebuilds producer state from the newest snapshot at or below the new end plus a replay
    /// (the truncation removed the snapshots past it), which also rebuilds the
    /// aborted-transaction index of the replayed range, so the LSO and the index describe
    /// exactly the records kept. Returns the new log end offset.
    pub fn truncate_to(&self, offset: i64) -> Result<i64, KafkaError> {
        let mut state = self.state.lock();
        Self::follower_only(&state)?;
        let end = state.log.truncate_to(offset)?;
        self.after_truncation(&mut state)?;
        Ok(end)
    }

    /// Kafka's `truncateFullyAndStartAt`: the leader's log start is past our whole log.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), KafkaError> {
        let mut state = self.state.lock();
        Self::follower_only(&state)?;
        state.log.truncate_fully_and_start_at(offset)?;
        self.after_truncation(&mut state)
    }

    /// Truncation is a follower's (checked under the lock: a replica that just became leader
    /// never cuts its log on a late fetch response).
    fn follower_only(state: &State) -> Result<(), KafkaError> {
        if state.role.is_leader() {
            return Err(KafkaError::new(
                ResponseError::NotLeaderOrFollower,
                "the leader of a partition does not truncate its log",
            ));
        }
        Ok(())
    }

    fn after_truncation(&self, state: &mut State) -> Result<(), KafkaError> {
        state.producers = load_producer_state(&mut state.log)?;
        if state.conditional.is_some() {
            state.conditional_stale = true;
        }
        let end = state.log.log_end_offset();
        // Everything kept was fsynced by the truncation itself.
        self.synced_offset.store(end, Ordering::Release);
        Ok(())
    }

    /// Everything below this offset is fsynced (the leader's durable LEO under `--flush always`).
    pub fn synced_offset(&self) -> i64 {
        self.synced_offset.load(Ordering::Acquire)
    }

    /// The log end offset.
    pub fn log_end_offset(&self) -> i64 {
        self.state.lock().log.log_end_offset()
    }

    /// `Log::end_offset_for` (OffsetForLeaderEpoch, `DivergingEpoch`, truncation).
    pub fn end_offset_for(&self, epoch: i32) -> (i32, i64) {
        self.state.lock().log.end_offset_for(epoch)
    }

    /// The latest epoch in the leader-epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.state.lock().log.latest_epoch()
    }

    /// Becoming leader: fsync what the log holds (blocking; done once per leadership change),
    /// then record `(epoch, LEO)` in the epoch cache, durably. Returns the LEO, where the epoch
    /// starts.
    pub fn prepare_leadership(&self, epoch: i32) -> Result<i64, KafkaError> {
        self.prepare_leadership_with(epoch, true)
    }

    /// [`Partition::prepare_leadership`], the fsync only when `sync` (a partition with one
    /// replica has no follower for which its log must be on disk first: its HW is its log end
    /// either way, and skipping it keeps a restart with many partitions free of one fsync per
    /// partition).
    pub fn prepare_leadership_with(&self, epoch: i32, sync: bool) -> Result<i64, KafkaError> {
        if !sync {
            let mut state = self.state.lock();
            state.log.assign_leader_epoch(epoch)?;
            return Ok(state.log.log_end_offset());
        }
        let (file, target) = self.state.lock().log.sync_target();
        crate::metrics::timed_fsync(|| file.sync_data())
            .map_err(|e| KafkaError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        self.synced_offset.fetch_max(target, Ordering::AcqRel);
        let mut state = self.state.lock();
        state.log.assign_leader_epoch(epoch)?;
        Ok(state.log.log_end_offset())
    }
}

impl State {
    fn marks(&self) -> Watermarks {
        let log_end_offset = self.log.log_end_offset();
        let log_start_offset = self.log.log_start_offset();
        let high_watermark = match self.high_watermark {
            None => log_end_offset,
            Some(hw) => hw
                .min(log_end_offset)
                .max(log_start_offset.min(log_end_offset)),
        };
        Watermarks {
            log_start_offset,
            high_watermark,
            log_end_offset,
            // As Kafka (`UnifiedLog.updateFirstUnstableOffset`): an open transaction whose
            // start retention or DeleteRecords removed holds the LSO at the log start.
            last_stable_offset: self
                .producers
                .last_stable_offset(high_watermark)
                .max(log_start_offset.min(high_watermark)),
        }
    }
}

/// Rebuilds producer state on open: the newest snapshot not past the log end that reads back
/// whole, then the log after it replayed (every batch header, and the control record of each
/// marker). The aborted-transaction index entries of the replayed range are dropped and
/// entered again as the replay meets their markers, so an index torn by a crash is rebuilt.
/// With no usable snapshot (a log written before snapshots existed) the whole log is replayed.
fn load_producer_state(log: &mut Log) -> Result<ProducerStateTable, KafkaError> {
    let end = log.log_end_offset();
    let dir = log.dir().to_path_buf();
    producer_snapshot::remove_after(&dir, end)?;
    let mut loaded = None;
    for offset in producer_snapshot::list(&dir)?.into_iter().rev() {
        match producer_snapshot::read(&dir, offset)?.and_then(|b| ProducerStateTable::decode(&b)) {
            Some(table) => {
                loaded = Some((table, offset));
                break;
            }
            None => {
                tracing::warn!(dir = %dir.display(), offset, "ignoring an unreadable producer-state snapshot")
            }
        }
    }
    let (mut table, from) = loaded.unwrap_or_default();
    log.truncate_txn_indexes_from(from)?;
    let mut completed = Vec::new();
    if from < end {
        log.scan_from(from, &mut |h, control| {
            if h.base_offset >= from {
                if let Some(done) = table.replay(h, control) {
                    completed.push(done);
                }
            }
        })?;
    }
    for d in completed.into_iter().filter(|d| d.aborted) {
        log.add_aborted_txn(AbortedTxnEntry {
            producer_id: d.producer_id,
            first_offset: d.first_offset,
            last_offset: d.last_offset,
            last_stable_offset: d.last_stable_offset,
        })?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::records::compute_crc;

    /// An uncompressed batch of `count` one-byte records.
    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, transactional: bool) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            // length 8: attributes, ts delta, offset delta, key -1, value len 1, value, headers 0
            records.extend([8u8, 0, 0, (i as u8) << 1, 1, 2, b'v', 0]);
        }
        let mut b = Vec::new();
        b.extend(0i64.to_be_bytes());
        b.extend((49 + records.len() as i32).to_be_bytes());
        b.extend(0i32.to_be_bytes());
        b.push(2);
        b.extend(0u32.to_be_bytes());
        b.extend((if transactional { 0x10i16 } else { 0 }).to_be_bytes());
        b.extend((count - 1).to_be_bytes());
        b.extend(1000i64.to_be_bytes());
        b.extend(1000i64.to_be_bytes());
        b.extend(pid.to_be_bytes());
        b.extend(epoch.to_be_bytes());
        b.extend(seq.to_be_bytes());
        b.extend(count.to_be_bytes());
        b.extend(records);
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn txn_append(p: &Partition, pid: i64, seq: i32, count: i32) -> Appended {
        let guard = p.start_txn_verification(pid, 0);
        p.append_verified(&batch(pid, 0, seq, count, true), 1000, guard)
            .unwrap()
    }

    fn marker(pid: i64, commit: bool, coordinator_epoch: i32) -> TxnMarker {
        TxnMarker {
            producer_id: pid,
            producer_epoch: 0,
            commit,
            coordinator_epoch,
        }
    }

    /// Transaction version 2: the next transaction (epoch + 1) may reach a partition before
    /// that partition's marker of the previous one; its batch is not part of the open
    /// transaction and needs the coordinator's verification, and the marker (epoch + 1) then
    /// closes only the previous transaction.
    #[test]
    fn tv2_next_epoch_batch_is_not_part_of_the_open_transaction() {
        let root = tempfile::tempdir().unwrap();
        let p = Partition::open(&root.path().join("t-0"), 0, LogConfig::default(), 1000).unwrap();
        let guard = p.start_txn_verification(7, 0);
        assert!(guard.is_some());
        p.append_verified(&batch(7, 0, 0, 2, true), 1000, guard)
            .unwrap(); // 0..1
        assert_eq!(p.start_txn_verification(7, 0), None, "open at epoch 0");
        // The next transaction's batch at epoch 1: verification needed, refused without it.
        assert_eq!(
            p.append(&batch(7, 1, 0, 1, true), 1000).unwrap_err().code,
            ResponseError::InvalidTxnState.code()
        );
        assert!(p.start_txn_verification(7, 1).is_some());
        // The TV2 marker carries epoch 1 and closes offsets 0..1 only.
        let mut m = marker(7, true, 0);
        m.producer_epoch = 1;
        assert_eq!(p.append_marker(m, 1000).unwrap().base_offset, 2);
        assert_eq!(p.last_stable_offset(), 3);
        // A late batch of the previous epoch is refused; the next transaction starts at 0.
        assert_eq!(
            p.append(&batch(7, 0, 2, 1, true), 1000).unwrap_err().code,
            ResponseError::InvalidProducerEpoch.code()
        );
        let guard = p.start_txn_verification(7, 1);
        let a = p
            .append_verified(&batch(7, 1, 0, 1, true), 1000, guard)
            .unwrap();
        assert_eq!((a.base_offset, p.last_stable_offset()), (3, 3));
    }

    #[test]
    fn transactions_lso_markers_index_and_recovery() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t-0");
        let config = LogConfig::default;
        let p = Partition::open(&dir, 0, config(), 1000).unwrap();
        p.append(&batch(-1, -1, -1, 2, false), 1000).unwrap(); // 0..1
        assert_eq!(txn_append(&p, 7, 0, 2).base_offset, 2); // 2..3, txn of 7
        assert_eq!(p.last_stable_offset(), 2);
        // Unverified transactional batches and client control batches are refused.
        let e = p.append(&batch(8, 0, 0, 1, true), 1000).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidTxnState.code());
        let mut ctl = batch(9, 0, 0, 1, true);
        ctl[22] |= 0x20;
        let crc = compute_crc(&ctl);
        ctl[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            p.append(&ctl, 1000).unwrap_err().code,
            ResponseError::InvalidRecord.code()
        );
        // Non-transactional write of producer 7 mid-transaction.
        assert_eq!(
            p.append(&batch(7, 0, 2, 1, false), 1000).unwrap_err().code,
            ResponseError::InvalidTxnState.code()
        );
        // A verification voided by a marker cannot open a transaction.
        let stale = p.start_txn_verification(8, 0);
        assert!(stale.is_some());
        p.append_marker(marker(8, false, 0), 1000).unwrap(); // 4, no open txn
        assert_eq!(
            p.append_verified(&batch(8, 0, 0, 1, true), 1000, stale)
                .unwrap_err()
                .code,
            ResponseError::InvalidTxnState.code()
        );
        assert_eq!(p.last_stable_offset(), 2);
        assert!(p.aborted_transactions(0, 100).is_empty());
        assert_eq!(txn_append(&p, 8, 0, 1).base_offset, 5); // txn of 8 at 5
        p.append(&batch(-1, -1, -1, 1, false), 1000).unwrap(); // 6
                                                               // Abort 7: LSO moves to 8's first offset; the index has 7's abort.
        let a = p.append_marker(marker(7, false, 3), 1000).unwrap();
        assert_eq!(a.base_offset, 7);
        assert_eq!(p.last_stable_offset(), 5);
        let aborted = vec![AbortedTxn {
            producer_id: 7,
            first_offset: 2,
            last_offset: 7,
        }];
        assert_eq!(p.aborted_transactions(0, 8), aborted);
        assert!(p.aborted_transactions(0, 2).is_empty());
        // Fenced coordinator.
        assert_eq!(
            p.append_marker(marker(7, true, 2), 1000).unwrap_err().code,
            ResponseError::TransactionCoordinatorFenced.code()
        );
        // A retried batch of 8 is a duplicate with its original offset.
        let dup = p
            .append_verified(&batch(8, 0, 0, 1, true), 1000, None)
            .unwrap();
        assert!(dup.duplicate && dup.base_offset == 5);
        let views = p.describe_producers();
        let v8 = views.iter().find(|v| v.producer_id == 8).unwrap();
        assert_eq!(v8.current_txn_start_offset, 5);
        drop(p);

        // Unclean reopen with no snapshot: the whole log is replayed, the index rebuilt.
        std::fs::remove_file(dir.join("00000000000000000000.txnindex")).unwrap();
        let p = Partition::open(&dir, 0, config(), 1000).unwrap();
        assert_eq!(p.last_stable_offset(), 5);
        assert_eq!(p.aborted_transactions(0, 8), aborted);
        assert!(
            p.append(&batch(8, 0, 1, 1, true), 1000).is_ok(),
            "txn still open"
        );
        p.append_marker(marker(8, true, 3), 1000).unwrap(); // 9
        assert_eq!(p.last_stable_offset(), 10);
        // Clean shutdown snapshot; then more data, a torn index entry, and a crash.
        p.snapshot_producer_state();
        assert_eq!(txn_append(&p, 7, 2, 1).base_offset, 10);
        p.append_marker(marker(7, false, 3), 1000).unwrap(); // 11
        drop(p);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("00000000000000000000.txnindex"))
            .unwrap();
        f.write_all(&[0u8; 10]).unwrap();
        drop(f);
        let p = Partition::open(&dir, 0, config(), 1000).unwrap();
        assert_eq!(p.last_stable_offset(), 12);
        let all = p.aborted_transactions(0, 12);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[1].first_offset, 10);
        assert_eq!(all[1].last_offset, 11);
        // Duplicate detection survives the restart (from the snapshot + replay).
        let dup = p
            .append_verified(&batch(8, 0, 1, 1, true), 1000, None)
            .unwrap();
        assert!(dup.duplicate && dup.base_offset == 8);
    }

    #[test]
    fn snapshots_at_roll_keep_producers_of_older_segments() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t-0");
        let config = || LogConfig {
            segment_bytes: 200,
            ..LogConfig::default()
        };
        let p = Partition::open(&dir, 0, config(), 1000).unwrap();
        p.append(&batch(5, 0, 0, 1, false), 1000).unwrap();
        for i in 0..5 {
            p.append(&batch(6, 0, 2 * i, 2, false), 1000).unwrap();
        }
        assert!(p.state.lock().log.segment_count() > 2);
        drop(p);
        // Kill the active segment's chance to know producer 5: its batch is two segments back.
        let p = Partition::open(&dir, 0, config(), 1000).unwrap();
        let dup = p.append(&batch(5, 0, 0, 1, false), 1000).unwrap();
        assert!(dup.duplicate && dup.base_offset == 0);
    }
}
