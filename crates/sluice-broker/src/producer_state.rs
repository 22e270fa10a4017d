//! Producer state of one partition (Kafka's `ProducerStateManager` and `ProducerAppendInfo`):
//! per producer id the epoch, the last five batches' sequence ranges and offsets, the last
//! timestamp, the last coordinator epoch and the first offset of its open transaction; and the
//! set of open transactions ordered by first offset, which gives the last stable offset.
//!
//! It answers a retried batch with its original offsets, refuses a sequence gap, a stale
//! epoch, a non-transactional write inside an open transaction, and a marker from a fenced
//! coordinator. Plain code, no IO: the partition consults it under its lock before appending,
//! records what it appended, and persists [`ProducerStateTable::encode`] in snapshots.

use std::collections::{BTreeMap, HashMap, VecDeque};

use sluice_storage::{BatchHeader, ControlRecord};

pub use crate::limits::MAX_PRODUCERS_PER_PARTITION;

/// Kafka keeps this many batches per producer; clients keep at most 5 in flight.
pub const BATCHES_TO_RETAIN: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_used: u64,
    /// Max timestamp of the producer's last batch or marker (Kafka's `lastTimestamp`).
    last_timestamp: i64,
    /// The coordinator epoch of the last marker, -1 before any.
    coordinator_epoch: i32,
    /// First offset of the producer's open transaction on this partition.
    txn_first_offset: Option<i64>,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            last_used: 0,
            last_timestamp: -1,
            coordinator_epoch: -1,
            txn_first_offset: None,
        }
    }
}

/// The verdict on an incoming data batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already appended: answer with these offsets, do not append.
    Duplicate { first_offset: i64, last_offset: i64 },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder { expected: i32, got: i32 },
    /// INVALID_PRODUCER_EPOCH.
    StaleEpoch { current: i16, got: i16 },
    /// INVALID_TXN_STATE: a non-transactional batch while the producer's transaction is open.
    NonTransactionalInTxn { txn_first_offset: i64 },
    /// Every tracked producer has an open transaction and the table is full.
    TooManyProducers,
}

/// Why a marker is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerCheck {
    Ok,
    /// INVALID_PRODUCER_EPOCH.
    StaleEpoch {
        current: i16,
        got: i16,
    },
    /// TRANSACTION_COORDINATOR_FENCED.
    CoordinatorFenced {
        current: i32,
        got: i32,
    },
}

/// A transaction a marker closed on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    /// The last stable offset right after the marker (the first offset of the oldest
    /// transaction still open, else marker + 1): the txn index entry's `lastStableOffset`.
    pub last_stable_offset: i64,
    pub aborted: bool,
}

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerView {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// -1 when no transaction is open.
    pub current_txn_start_offset: i64,
}

#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset → producer id.
    ongoing: BTreeMap<i64, i64>,
    /// KIP-890 verification guards: producer id → the guard of the verification in flight.
    /// A marker clears the producer's guard, so a batch verified before the transaction ended
    /// cannot open a new one (a hanging transaction).
    verifying: HashMap<i64, u64>,
    next_guard: u64,
    clock: u64,
}

/// Producers evicted together when the table is full (1% of it).
const EVICT_AT_ONCE: usize = MAX_PRODUCERS_PER_PARTITION / 100;

impl ProducerStateTable {
    /// Checks a data batch (with a producer id) before it is appended.
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // No state (new producer, or its state expired): accept any sequence.
            if self.producers.len() >= MAX_PRODUCERS_PER_PARTITION
                && self.ongoing.len() >= self.producers.len()
            {
                return SequenceCheck::TooManyProducers;
            }
            return SequenceCheck::Append;
        };
        if h.producer_epoch == entry.epoch {
            let last_seq = h.last_sequence();
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
            {
                return SequenceCheck::Duplicate {
                    first_offset: dup.first_offset,
                    last_offset: dup.last_offset,
                };
            }
        }
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::StaleEpoch {
                current: entry.epoch,
                got: h.producer_epoch,
            };
        }
        if !h.is_transactional() {
            if let Some(first) = entry.txn_first_offset {
                return SequenceCheck::NonTransactionalInTxn {
                    txn_first_offset: first,
                };
            }
        }
        if h.producer_epoch == entry.epoch {
            let Some(last) = entry.batches.back() else {
                return SequenceCheck::Append;
            };
            let expected = if last.last_seq == i32::MAX {
                0
            } else {
                last.last_seq + 1
            };
            if h.base_sequence != expected {
                return SequenceCheck::OutOfOrder {
                    expected,
                    got: h.base_sequence,
                };
            }
            return SequenceCheck::Append;
        }
        // A newer epoch starts its sequences at 0.
        if h.base_sequence != 0 {
            return SequenceCheck::OutOfOrder {
                expected: 0,
                got: h.base_sequence,
            };
        }
        SequenceCheck::Append
    }

    /// Whether the producer has an open transaction here at exactly this epoch (Kafka's
    /// `hasOngoingTransaction(producerId, producerEpoch)`): then a transactional batch at that
    /// epoch needs no verification. Under transaction.version 2 every transaction has its own
    /// epoch, so a batch of the next transaction (epoch + 1) that arrives before this
    /// partition's marker of the previous one must be verified (the coordinator answers
    /// CONCURRENT_TRANSACTIONS until every marker is written); it must not join the open one.
    pub fn has_open_txn(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|e| e.txn_first_offset.is_some() && e.epoch == producer_epoch)
    }

    /// Starts a KIP-890 verification for the producer; the returned guard must still be the
    /// producer's when the verified batch is appended ([`Self::guard_holds`]). A verification
    /// already in flight is shared (Kafka reuses its `VerificationStateEntry`): a producer
    /// pipelines up to five requests, and a second one must not void the first one's guard.
    pub fn start_verification(&mut self, producer_id: i64) -> u64 {
        if let Some(&guard) = self.verifying.get(&producer_id) {
            return guard;
        }
        if self.verifying.len() >= MAX_PRODUCERS_PER_PARTITION {
            // Bounded: a flood of verifications forgets the oldest; their appends are refused
            // (retriable for the client) rather than the table growing.
            self.verifying.clear();
        }
        self.next_guard += 1;
        self.verifying.insert(producer_id, self.next_guard);
        self.next_guard
    }

    pub fn guard_holds(&self, producer_id: i64, guard: u64) -> bool {
        self.verifying.get(&producer_id) == Some(&guard)
    }

    /// Records an appended data batch whose header carries its assigned base offset.
    pub fn record(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() {
            return;
        }
        let entry = self.entry(h.producer_id);
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = h.max_timestamp;
        if h.base_sequence >= 0 {
            if entry.batches.len() == BATCHES_TO_RETAIN {
                entry.batches.pop_front();
            }
            entry.batches.push_back(BatchMeta {
                first_seq: h.base_sequence,
                last_seq: h.last_sequence(),
                first_offset: h.base_offset,
                last_offset: h.last_offset(),
            });
        }
        let started = if h.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(h.base_offset);
            true
        } else {
            false
        };
        if started {
            self.ongoing.insert(h.base_offset, h.producer_id);
            self.verifying.remove(&h.producer_id);
        }
    }

    /// The entry of a producer, created (evicting the least recently used producer with no
    /// open transaction when the table is full) and touched.
    fn entry(&mut self, producer_id: i64) -> &mut ProducerEntry {
        self.clock += 1;
        if !self.producers.contains_key(&producer_id)
            && self.producers.len() >= MAX_PRODUCERS_PER_PARTITION
        {
            // Evict the least recently used producers without an open transaction, a slice
            // of the table at once: one linear pass per `EVICT_AT_ONCE` new producers, not per
            // producer (producer ids come from clients; a stream of new ids must not cost a
            // scan of the whole table each).
            let mut idle: Vec<(u64, i64)> = self
                .producers
                .iter()
                .filter(|(_, e)| e.txn_first_offset.is_none())
                .map(|(pid, e)| (e.last_used, *pid))
                .collect();
            let n = EVICT_AT_ONCE.min(idle.len());
            if n > 0 && n < idle.len() {
                idle.select_nth_unstable(n - 1);
            }
            for (_, pid) in idle.iter().take(n) {
                self.producers.remove(pid);
            }
        }
        let clock = self.clock;
        let entry = self.producers.entry(producer_id).or_default();
        entry.last_used = clock;
        entry
    }

    /// Checks a transaction marker before it is appended.
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> MarkerCheck {
        let Some(entry) = self.producers.get(&producer_id) else {
            return MarkerCheck::Ok;
        };
        if producer_epoch < entry.epoch {
            return MarkerCheck::StaleEpoch {
                current: entry.epoch,
                got: producer_epoch,
            };
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return MarkerCheck::CoordinatorFenced {
                current: entry.coordinator_epoch,
                got: coordinator_epoch,
            };
        }
        MarkerCheck::Ok
    }

    /// Records an appended marker (a control batch whose header carries its offset): closes
    /// the producer's open transaction, if any, and returns it.
    pub fn record_marker(
        &mut self,
        h: &BatchHeader,
        control: ControlRecord,
    ) -> Option<CompletedTxn> {
        if !h.has_producer_id() {
            return None;
        }
        let entry = self.entry(h.producer_id);
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = h.max_timestamp;
        entry.coordinator_epoch = control.coordinator_epoch;
        let first = entry.txn_first_offset.take();
        self.verifying.remove(&h.producer_id);
        let first = first?;
        self.ongoing.remove(&first);
        let marker = h.base_offset;
        Some(CompletedTxn {
            producer_id: h.producer_id,
            first_offset: first,
            last_offset: marker,
            last_stable_offset: self.first_unstable_offset().unwrap_or(marker + 1),
            aborted: control.is_abort(),
        })
    }

    /// Records a batch seen while replaying the log (recovery): data or marker.
    pub fn replay(
        &mut self,
        h: &BatchHeader,
        control: Option<ControlRecord>,
    ) -> Option<CompletedTxn> {
        if h.is_control() {
            // A control batch that is not a readable transaction marker changes nothing.
            let c = control.filter(|c| c.is_abort() || c.is_commit())?;
            self.record_marker(h, c)
        } else {
            self.record(h);
            None
        }
    }

    /// The first offset of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Kafka's LSO on one node: min(first offset of the oldest open transaction, `hw`).
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.first_unstable_offset()
            .map_or(high_watermark, |f| f.min(high_watermark))
    }

    /// Forgets producers idle for `expiration_ms` (`producer.id.expiration.ms`), never one
    /// with an open transaction. Returns how many were removed.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn open_txn_count(&self) -> usize {
        self.ongoing.len()
    }

    /// Every producer, for DescribeProducers.
    pub fn describe(&self) -> Vec<ProducerView> {
        let mut out: Vec<ProducerView> = self
            .producers
            .iter()
            .map(|(pid, e)| ProducerView {
                producer_id: *pid,
                producer_epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.txn_first_offset.unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|v| v.producer_id);
        out
    }

    /// The snapshot payload: `count u32`, then per producer (least recently used first)
    /// `pid i64, epoch i16, last_timestamp i64, coordinator_epoch i32, txn_first_offset i64
    /// (-1 none), batches u8, batches × (first_seq i32, last_seq i32, first_offset i64,
    /// last_offset i64)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut entries: Vec<(&i64, &ProducerEntry)> = self.producers.iter().collect();
        entries.sort_by_key(|(_, e)| e.last_used);
        let mut out = Vec::with_capacity(4 + entries.len() * 40);
        out.extend((entries.len() as u32).to_be_bytes());
        for (pid, e) in entries {
            out.extend(pid.to_be_bytes());
            out.extend(e.epoch.to_be_bytes());
            out.extend(e.last_timestamp.to_be_bytes());
            out.extend(e.coordinator_epoch.to_be_bytes());
            out.extend(e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend(b.first_seq.to_be_bytes());
                out.extend(b.last_seq.to_be_bytes());
                out.extend(b.first_offset.to_be_bytes());
                out.extend(b.last_offset.to_be_bytes());
            }
        }
        out
    }

    /// Reads [`Self::encode`]'s payload; `None` if it is malformed in any way.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let mut r = Reader { buf, at: 0 };
        let count = r.u32()? as usize;
        // Each entry takes at least 31 bytes: a lying count cannot allocate much.
        if count > buf.len() / 31 {
            return None;
        }
        let mut t = ProducerStateTable::default();
        for _ in 0..count {
            let pid = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp = r.i64()?;
            let coordinator_epoch = r.i32()?;
            let txn = r.i64()?;
            let n = r.u8()? as usize;
            if n > BATCHES_TO_RETAIN || pid < 0 {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            t.clock += 1;
            let txn_first_offset = (txn >= 0).then_some(txn);
            if let Some(first) = txn_first_offset {
                if t.ongoing.insert(first, pid).is_some() {
                    return None;
                }
            }
            let entry = ProducerEntry {
                epoch,
                batches,
                last_used: t.clock,
                last_timestamp,
                coordinator_epoch,
                txn_first_offset,
            };
            if t.producers.insert(pid, entry).is_some() {
                return None;
            }
        }
        (r.at == buf.len()).then_some(t)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.at.checked_add(N)?;
        let b: [u8; N] = self.buf.get(self.at..end)?.try_into().ok()?;
        self.at = end;
        Some(b)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    fn txn(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: 0x10,
            ..header(pid, epoch, seq, count, base_offset)
        }
    }

    fn marker(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: 0x30,
            base_sequence: -1,
            ..header(pid, epoch, -1, 1, offset)
        }
    }

    fn ctl(commit: bool, coordinator_epoch: i32) -> ControlRecord {
        ControlRecord {
            kind: if commit { 1 } else { 0 },
            coordinator_epoch,
        }
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut t = ProducerStateTable::default();
        assert_eq!(t.check(&header(7, 0, 0, 3, 0)), SequenceCheck::Append);
        t.record(&header(7, 0, 0, 3, 10));
        assert_eq!(
            t.check(&header(7, 0, 0, 3, 0)),
            SequenceCheck::Duplicate {
                first_offset: 10,
                last_offset: 12
            }
        );
        assert_eq!(t.check(&header(7, 0, 3, 1, 0)), SequenceCheck::Append);
        assert_eq!(
            t.check(&header(7, 0, 5, 1, 0)),
            SequenceCheck::OutOfOrder {
                expected: 3,
                got: 5
            }
        );
        t.record(&header(7, 1, 0, 1, 13));
        assert_eq!(
            t.check(&header(7, 0, 4, 1, 0)),
            SequenceCheck::StaleEpoch { current: 1, got: 0 }
        );
        assert!(matches!(
            t.check(&header(7, 2, 4, 1, 0)),
            SequenceCheck::OutOfOrder { expected: 0, .. }
        ));
        // Only five batches are remembered.
        for i in 0..6 {
            t.record(&header(9, 0, i, 1, 100 + i64::from(i)));
        }
        assert!(matches!(
            t.check(&header(9, 0, 0, 1, 0)),
            SequenceCheck::OutOfOrder { .. }
        ));
        assert!(matches!(
            t.check(&header(9, 0, 1, 1, 0)),
            SequenceCheck::Duplicate {
                first_offset: 101,
                ..
            }
        ));
    }

    #[test]
    fn transactions_set_and_clear_the_lso() {
        let mut t = ProducerStateTable::default();
        assert_eq!(t.last_stable_offset(5), 5);
        // Producer 1 opens a transaction at 10, producer 2 at 12.
        t.record(&txn(1, 0, 0, 2, 10));
        t.record(&txn(2, 0, 0, 1, 12));
        t.record(&txn(1, 0, 2, 1, 13));
        assert_eq!(t.last_stable_offset(20), 10);
        assert_eq!(t.last_stable_offset(8), 8);
        // A non-transactional write by producer 1 mid-transaction is refused.
        assert_eq!(
            t.check(&header(1, 0, 3, 1, 0)),
            SequenceCheck::NonTransactionalInTxn {
                txn_first_offset: 10
            }
        );
        // A retried transactional batch is still a duplicate.
        assert!(matches!(
            t.check(&txn(1, 0, 2, 1, 0)),
            SequenceCheck::Duplicate {
                first_offset: 13,
                ..
            }
        ));
        assert!(t.has_open_txn(1, 0) && !t.has_open_txn(3, 0));
        // TV2: the next transaction's epoch is not the open one's.
        assert!(!t.has_open_txn(1, 1));
        // Abort producer 1's: the LSO moves to producer 2's first offset.
        assert_eq!(t.check_marker(1, 0, 5), MarkerCheck::Ok);
        let done = t.record_marker(&marker(1, 0, 14), ctl(false, 5)).unwrap();
        assert_eq!(
            done,
            CompletedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 14,
                last_stable_offset: 12,
                aborted: true
            }
        );
        assert_eq!(t.last_stable_offset(20), 12);
        // A marker from an older coordinator epoch is fenced; an older producer epoch too.
        assert_eq!(
            t.check_marker(1, 0, 4),
            MarkerCheck::CoordinatorFenced { current: 5, got: 4 }
        );
        t.record(&header(1, 1, 0, 1, 15));
        assert!(matches!(
            t.check_marker(1, 0, 6),
            MarkerCheck::StaleEpoch { .. }
        ));
        // A marker with no open transaction closes nothing.
        assert_eq!(t.record_marker(&marker(3, 0, 16), ctl(true, 0)), None);
        // Commit producer 2's: nothing open, LSO = HW.
        let done = t.record_marker(&marker(2, 0, 17), ctl(true, 5)).unwrap();
        assert_eq!((done.last_stable_offset, done.aborted), (18, false));
        assert_eq!(t.last_stable_offset(18), 18);
        // After the marker, a non-transactional write is fine again.
        assert_eq!(t.check(&header(2, 0, 1, 1, 0)), SequenceCheck::Append);
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_used_idle_producers_in_a_slice() {
        let mut t = ProducerStateTable::default();
        // Producer 0 has an open transaction and is the oldest: it is never evicted.
        t.record(&txn(0, 0, 0, 1, 0));
        for pid in 1..MAX_PRODUCERS_PER_PARTITION as i64 {
            t.record(&header(pid, 0, 0, 1, pid));
        }
        assert_eq!(t.len(), MAX_PRODUCERS_PER_PARTITION);
        let new = MAX_PRODUCERS_PER_PARTITION as i64;
        t.record(&header(new, 0, 0, 1, new));
        assert_eq!(t.len(), MAX_PRODUCERS_PER_PARTITION - EVICT_AT_ONCE + 1);
        assert!(
            t.has_open_txn(0, 0),
            "a producer with an open transaction stays"
        );
        let evicted = (1..=EVICT_AT_ONCE as i64)
            .all(|pid| matches!(t.check(&header(pid, 0, 5, 1, 0)), SequenceCheck::Append));
        assert!(evicted, "the least recently used idle producers went first");
        assert!(
            matches!(
                t.check(&header(new - 1, 0, 5, 1, 0)),
                SequenceCheck::OutOfOrder { .. }
            ),
            "recent producers keep their state"
        );
    }

    #[test]
    fn pipelined_verifications_share_one_guard() {
        let mut t = ProducerStateTable::default();
        let first = t.start_verification(4);
        let second = t.start_verification(4);
        assert_eq!(
            first, second,
            "the second request must not void the first one's guard"
        );
        assert!(t.guard_holds(4, first));
        assert_ne!(
            t.start_verification(5),
            first,
            "other producers get their own guard"
        );
    }

    #[test]
    fn verification_guard_is_cleared_by_a_marker() {
        let mut t = ProducerStateTable::default();
        let g = t.start_verification(4);
        assert!(t.guard_holds(4, g));
        t.record_marker(&marker(4, 0, 0), ctl(false, 0));
        assert!(!t.guard_holds(4, g));
        let g = t.start_verification(4);
        t.record(&txn(4, 0, 0, 1, 1));
        assert!(
            !t.guard_holds(4, g),
            "consumed by the append that opened the txn"
        );
    }

    #[test]
    fn expiry_spares_open_transactions() {
        let mut t = ProducerStateTable::default();
        t.record(&header(1, 0, 0, 1, 0));
        t.record(&txn(2, 0, 0, 1, 1));
        assert_eq!(t.expire(1_000, 100), 1);
        assert!(t.has_open_txn(2, 0));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn snapshot_round_trip_and_garbage() {
        let mut t = ProducerStateTable::default();
        for i in 0..7 {
            t.record(&header(1, 2, i, 1, i64::from(i)));
        }
        t.record(&txn(5, 0, 0, 3, 10));
        t.record_marker(&marker(6, 1, 13), ctl(true, 9));
        let bytes = t.encode();
        let u = ProducerStateTable::decode(&bytes).unwrap();
        assert_eq!(u.describe(), t.describe());
        assert_eq!(u.last_stable_offset(100), 10);
        assert!(matches!(
            u.check(&header(1, 2, 5, 1, 0)),
            SequenceCheck::Duplicate {
                first_offset: 5,
                ..
            }
        ));
        let v = u.describe();
        assert!(v.contains(&ProducerView {
            producer_id: 6,
            producer_epoch: 1,
            last_sequence: -1,
            last_timestamp: 0,
            coordinator_epoch: 9,
            current_txn_start_offset: -1
        }));
        for cut in 0..bytes.len() {
            assert!(ProducerStateTable::decode(&bytes[..cut]).is_none());
        }
        assert!(ProducerStateTable::decode(&[0xff; 64]).is_none());
    }
}
