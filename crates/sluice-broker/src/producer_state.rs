//! Idempotent-producer state of one partition (Kafka's `ProducerStateManager`): per producer id,
//! the epoch and the last five batches' sequence ranges and offsets. It answers a retried
//! batch with its original offsets, and refuses a sequence gap or a stale epoch.
//!
//! Plain code, no IO: the partition consults it under its lock before appending, and rebuilds
//! it on open from the batch headers that log recovery walks.

use std::collections::{HashMap, VecDeque};

use sluice_storage::BatchHeader;

/// Kafka keeps this many batches per producer; clients keep at most 5 in flight.
pub const BATCHES_TO_RETAIN: usize = 5;
/// Producers tracked per partition before the least recently used is forgotten.
pub const MAX_PRODUCERS_PER_PARTITION: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_used: u64,
}

/// The verdict on an incoming batch.
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
}

#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    clock: u64,
}

impl ProducerStateTable {
    /// Checks a batch (with a producer id) before it is appended.
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // No state (new producer, or its state was lost to retention): accept any sequence.
            return SequenceCheck::Append;
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::StaleEpoch {
                current: entry.epoch,
                got: h.producer_epoch,
            };
        }
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

    /// Records an appended batch whose header carries its assigned base offset.
    pub fn record(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() {
            return;
        }
        self.clock += 1;
        if !self.producers.contains_key(&h.producer_id)
            && self.producers.len() >= MAX_PRODUCERS_PER_PARTITION
        {
            if let Some(oldest) = self
                .producers
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(pid, _)| *pid)
            {
                self.producers.remove(&oldest);
            }
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_used = self.clock;
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
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
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
}
